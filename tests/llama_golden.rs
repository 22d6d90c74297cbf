//! kpg's LLaMA against Hugging Face transformers: every directory under tests/fixtures/llama/
//! (written by tools/make_llama_fixtures.py) holds a model and `golden.json` with transformers'
//! logits and greedy continuations. Tolerances are the issue's: whole-tensor relative error 1e-4
//! for f32 weights, 1e-3 for f16/bf16 weights (both computed in f32).

mod common;

use std::path::Path;

use common::{fixtures, rel_error};
use kpg::model::llama::generate::{greedy_generate, teacher_forced_logits, RunOptions};
use kpg::model::llama::Llama;
use serde_json::Value;

struct Sequence {
    ids: Vec<u32>,
    logits: Vec<f32>,
    greedy: Vec<u32>,
    gaps: Vec<f64>,
    max_new: usize,
}

fn read_golden(dir: &Path) -> (String, Vec<Sequence>) {
    let text = std::fs::read_to_string(dir.join("golden.json")).unwrap();
    let g: Value = serde_json::from_str(&text).unwrap();
    let ids = |v: &Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let seqs = g["sequences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Sequence {
            ids: ids(&s["ids"]),
            logits: s["logits"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|row| {
                    row.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap() as f32)
                })
                .collect(),
            greedy: ids(&s["greedy"]["ids"]),
            gaps: s["greedy"]["top2_gap"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect(),
            max_new: s["greedy"]["max_new_tokens"].as_u64().unwrap() as usize,
        })
        .collect();
    (g["storage_dtype"].as_str().unwrap().to_string(), seqs)
}

fn cases() -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(fixtures().join("llama"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("golden.json").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 7, "golden fixtures missing");
    dirs
}

/// Greedy tokens must agree up to the first step where the reference's top two logits are
/// within 1e-3: from there on, rounding may legitimately pick the other token.
fn check_greedy(case: &str, got: &[u32], want: &[u32], gaps: &[f64]) {
    for (step, (&w, &gap)) in want.iter().zip(gaps).enumerate() {
        if gap < 1e-3 {
            return;
        }
        assert_eq!(
            got.get(step),
            Some(&w),
            "{case}: greedy step {step}: got {got:?}, want {want:?}"
        );
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{case}: greedy length: got {got:?}, want {want:?}"
    );
}

#[test]
fn logits_and_greedy_match_transformers() {
    for dir in cases() {
        let case = dir.file_name().unwrap().to_string_lossy().to_string();
        let (dtype, seqs) = read_golden(&dir);
        let tol = if dtype == "float32" { 1e-4 } else { 1e-3 };
        let model = Llama::load(&dir).unwrap_or_else(|e| panic!("{case}: {e}"));
        // Whole sequence in one chunk, and fed through many small blocks in small chunks.
        let layouts = [
            RunOptions::default(),
            RunOptions {
                prefill_chunk: 5,
                block_size: 3,
            },
        ];
        for seq in &seqs {
            for opts in &layouts {
                let got = teacher_forced_logits(&model, &seq.ids, opts).unwrap();
                let err = rel_error(&got, &seq.logits);
                assert!(
                    err <= tol,
                    "{case}: len {} {opts:?}: logits rel error {err:.3e} > {tol:e}",
                    seq.ids.len()
                );
            }
            let got = greedy_generate(
                &model,
                std::slice::from_ref(&seq.ids),
                seq.max_new,
                true,
                &layouts[0],
            )
            .unwrap();
            check_greedy(&case, &got[0], &seq.greedy, &seq.gaps);
        }
    }
}

/// A batch of sequences of different lengths gives each sequence what it gets alone.
#[test]
fn batched_generation_matches_one_at_a_time() {
    for dir in cases() {
        let case = dir.file_name().unwrap().to_string_lossy().to_string();
        let (_, seqs) = read_golden(&dir);
        let model = Llama::load(&dir).unwrap();
        let prompts: Vec<Vec<u32>> = seqs.iter().map(|s| s.ids.clone()).collect();
        let opts = RunOptions {
            prefill_chunk: 8,
            block_size: 4,
        };
        let batched = greedy_generate(&model, &prompts, 12, false, &opts).unwrap();
        for (p, b) in prompts.iter().zip(&batched) {
            let alone = greedy_generate(&model, std::slice::from_ref(p), 12, false, &opts).unwrap();
            assert_eq!(&alone[0], b, "{case}: prompt of {} tokens", p.len());
        }
    }
}

/// The command line prints the same logits (what tools and other tests rely on).
#[test]
fn debug_logits_command_matches_transformers() {
    let dir = fixtures().join("llama/gqa_headdim_f16_v4");
    let (_, seqs) = read_golden(&dir);
    let seq = &seqs[1];
    let ids: Vec<String> = seq.ids.iter().map(|i| i.to_string()).collect();
    let out = std::process::Command::new(common::kpg_bin())
        .args(["debug", "logits", "--model"])
        .arg(&dir)
        .args(["--ids", &ids.join(",")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = json["logits"].as_array().unwrap();
    assert_eq!(rows.len(), seq.ids.len());
    let got: Vec<f32> = rows
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
        })
        .collect();
    assert!(rel_error(&got, &seq.logits) <= 1e-3);

    let out = std::process::Command::new(common::kpg_bin())
        .args(["debug", "generate", "--max-new-tokens", "12", "--model"])
        .arg(&dir)
        .args(["--ids", &ids.join(",")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let got: Vec<u32> = json["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    check_greedy("cli", &got, &seq.greedy, &seq.gaps);
}
