//! kpg's One2Set generator against the PyTorch reference: every directory under
//! tests/fixtures/one2set/ (written by tools/make_one2set_fixtures.py from
//! tools/one2set_reference.py) holds a tiny random generator, its documents and `golden.json` with
//! the reference's greedy tokens, token probabilities and top-2 gaps for every slot, and the final
//! candidates.
//!
//! Tokens must agree up to the first step where the reference's top two probabilities are within
//! `NEAR_TIE` (from there on, f32 rounding may legitimately pick the other); probabilities within
//! `PROB_ATOL` (both sides compute in f32 from the same stored weights).

mod common;

use std::path::{Path, PathBuf};

use common::{fixtures, kpg_bin};
use kpg::one2set::decode::SlotOutput;
use kpg::one2set::vocab::UNK_ID;
use kpg::one2set::{GenerateWorkspace, Generator, PreparedDocument};
use serde_json::Value;

const NEAR_TIE: f64 = 1e-4;
const PROB_ATOL: f64 = 1e-4;

struct GoldSlot {
    tokens: Vec<u32>,
    probs: Vec<f64>,
    gaps: Vec<f64>,
    attn_argmax: Vec<u32>,
}

struct GoldDoc {
    id: String,
    tokens: Vec<String>,
    slots: Vec<GoldSlot>,
    candidates: Vec<Value>,
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn read_golden(dir: &Path) -> Vec<GoldDoc> {
    let g: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
    assert_eq!(
        g["version"], 1,
        "regenerate with tools/make_one2set_fixtures.py"
    );
    g["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| GoldDoc {
            id: d["id"].as_str().unwrap().to_string(),
            tokens: d["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect(),
            slots: d["slots"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| GoldSlot {
                    tokens: nums(&s["tokens"]).iter().map(|&x| x as u32).collect(),
                    probs: nums(&s["probs"]),
                    gaps: nums(&s["gaps"]),
                    attn_argmax: nums(&s["attn_argmax"]).iter().map(|&x| x as u32).collect(),
                })
                .collect(),
            candidates: d["candidates"].as_array().unwrap().clone(),
        })
        .collect()
}

fn cases() -> Vec<PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(fixtures().join("one2set"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("golden.json").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 2, "one2set golden fixtures missing");
    dirs
}

fn docs_jsonl(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("docs.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Compares one slot; returns false when a near tie cut the comparison short.
fn check_slot(what: &str, got: &SlotOutput, want: &GoldSlot) -> bool {
    for step in 0..want.tokens.len() {
        if want.gaps[step] < NEAR_TIE {
            return false;
        }
        assert_eq!(
            got.tokens.get(step),
            Some(&want.tokens[step]),
            "{what}: step {step}: got {:?}, want {:?}",
            got.tokens,
            want.tokens
        );
        let (g, w) = (got.probs[step] as f64, want.probs[step]);
        assert!(
            (g - w).abs() <= PROB_ATOL,
            "{what}: step {step}: probability {g} vs {w}"
        );
        if want.tokens[step] == UNK_ID {
            assert_eq!(
                got.attn_argmax[step], want.attn_argmax[step],
                "{what}: step {step}: most-attended source position for <unk>"
            );
        }
    }
    assert_eq!(
        got.tokens.len(),
        want.tokens.len(),
        "{what}: got {:?}, want {:?}",
        got.tokens,
        want.tokens
    );
    true
}

fn prepared(gen: &Generator, golden: &[GoldDoc]) -> Vec<PreparedDocument> {
    golden
        .iter()
        .map(|d| gen.prepare_tokens(&d.tokens))
        .collect()
}

#[test]
fn preprocessing_gives_the_reference_source_tokens() {
    for dir in cases() {
        let gen = Generator::load(&dir).unwrap();
        for (doc, gold) in docs_jsonl(&dir).iter().zip(read_golden(&dir)) {
            let tokens = kpg::preprocess::source_tokens(
                doc["title"].as_str().unwrap(),
                doc["abstract"].as_str().unwrap(),
            );
            assert_eq!(tokens, gold.tokens, "{}", gold.id);
            let p = gen.prepare(
                doc["title"].as_str().unwrap(),
                doc["abstract"].as_str().unwrap(),
            );
            assert!(p.source.len() <= gen.model.config.max_source_len);
        }
    }
}

#[test]
fn slots_match_the_pytorch_reference() {
    let mut compared = 0;
    for dir in cases() {
        let case = dir.file_name().unwrap().to_string_lossy().to_string();
        let gen = Generator::load(&dir).unwrap_or_else(|e| panic!("{case}: {e}"));
        let golden = read_golden(&dir);
        let docs = prepared(&gen, &golden);
        let refs: Vec<&PreparedDocument> = docs.iter().collect();
        let mut ws = GenerateWorkspace::default();
        let got = gen.decode(&refs, &mut ws).unwrap();
        for (g, want) in got.iter().zip(&golden) {
            assert_eq!(g.len(), want.slots.len());
            for (code, (gs, ws)) in g.iter().zip(&want.slots).enumerate() {
                compared +=
                    check_slot(&format!("{case} doc {} slot {code}", want.id), gs, ws) as usize;
            }
        }
    }
    assert!(compared >= 60, "only {compared} slots compared in full");
}

/// A document decoded alone, or in batches of other sizes, gives what it gives in the full batch.
#[test]
fn batching_does_not_change_slots() {
    for dir in cases() {
        let case = dir.file_name().unwrap().to_string_lossy().to_string();
        let gen = Generator::load(&dir).unwrap();
        let golden = read_golden(&dir);
        let docs = prepared(&gen, &golden);
        let mut ws = GenerateWorkspace::default();
        for size in [1, 2, 4] {
            for (c, chunk) in docs.chunks(size).enumerate() {
                let refs: Vec<&PreparedDocument> = chunk.iter().collect();
                let got = gen.decode(&refs, &mut ws).unwrap();
                for (i, g) in got.iter().enumerate() {
                    let want = &golden[c * size + i];
                    for (code, (gs, w)) in g.iter().zip(&want.slots).enumerate() {
                        check_slot(
                            &format!("{case} batch {size} doc {} slot {code}", want.id),
                            gs,
                            w,
                        );
                    }
                }
            }
        }
    }
}

/// Documents whose every slot is free of near ties must give the reference's candidates exactly.
fn tie_free(doc: &GoldDoc) -> bool {
    doc.slots
        .iter()
        .all(|s| s.gaps.iter().all(|&g| g >= NEAR_TIE))
}

fn check_candidates(what: &str, got: &[Value], want: &[Value]) {
    let key = |c: &Value| {
        (
            c["phrase"].as_str().unwrap().to_string(),
            c["slot"].as_u64().unwrap(),
            c["present"].as_bool().unwrap(),
        )
    };
    let g: Vec<_> = got.iter().map(key).collect();
    let w: Vec<_> = want.iter().map(key).collect();
    assert_eq!(g, w, "{what}: candidates");
    for (a, b) in got.iter().zip(want) {
        let (a, b) = (a["score"].as_f64().unwrap(), b["score"].as_f64().unwrap());
        assert!((a - b).abs() <= PROB_ATOL, "{what}: score {a} vs {b}");
    }
}

#[test]
fn candidates_match_the_pytorch_reference() {
    let mut compared = 0;
    for dir in cases() {
        let case = dir.file_name().unwrap().to_string_lossy().to_string();
        let gen = Generator::load(&dir).unwrap();
        let golden = read_golden(&dir);
        let docs = prepared(&gen, &golden);
        let refs: Vec<&PreparedDocument> = docs.iter().collect();
        let got = gen
            .generate(&refs, &mut GenerateWorkspace::default())
            .unwrap();
        for (g, want) in got.iter().zip(&golden) {
            if !tie_free(want) {
                continue;
            }
            let g: Vec<Value> = g.iter().map(|c| serde_json::to_value(c).unwrap()).collect();
            check_candidates(&format!("{case} doc {}", want.id), &g, &want.candidates);
            compared += 1;
        }
    }
    assert!(compared >= 6, "only {compared} documents compared");
}

#[test]
fn generate_command_matches_the_pytorch_reference() {
    for dir in cases() {
        let case = dir.file_name().unwrap().to_string_lossy().to_string();
        let out = std::process::Command::new(kpg_bin())
            .args(["generate", "--batch-docs", "4", "--generator"])
            .arg(&dir)
            .arg("--input")
            .arg(dir.join("docs.jsonl"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let golden = read_golden(&dir);
        assert_eq!(lines.len(), golden.len());
        for (line, want) in lines.iter().zip(&golden) {
            // Numeric ids come back as numbers, as docs.jsonl writes them.
            let id = match &line["id"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert_eq!(id, want.id);
            if tie_free(want) {
                let got = line["candidates"].as_array().unwrap();
                check_candidates(
                    &format!("{case} cli doc {}", want.id),
                    got,
                    &want.candidates,
                );
            }
        }
    }
}
