//! Whole-model checks: the LLaMA forward pass and a selection run on the GPU against the CPU
//! backend on synth models, and (when `tests/fixtures/llama` is in the working directory, as in a
//! checkout) the logits against transformers' golden ones.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::backend::cuda::CudaDevice;
use crate::backend::DeviceKind;
use crate::error::{KpgError, Result};
use crate::model::llama::generate::{greedy_generate, teacher_forced_logits, RunOptions};
use crate::model::llama::Llama;
use crate::model::weights::DType;
use crate::select::document::{synthetic_document, to_input_line};
use crate::select::run::{numbered, select_lines, SelectOptions};
use crate::select::Selector;
use crate::selftest::random::Rng;
use crate::selftest::{compare_model, Check, CheckResult, BF16, MODEL_BF16};

pub fn checks() -> Vec<Check> {
    vec![
        Check {
            name: "llama forward (synth tiny)",
            run: forward_check,
        },
        Check {
            name: "selection run (synth tiny)",
            run: selection_check,
        },
        Check {
            name: "llama logits vs transformers fixtures",
            run: golden_check,
        },
        Check {
            name: "lora adapters vs peft fixtures",
            run: lora_check,
        },
    ]
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Result<Self> {
        let p = std::env::temp_dir().join(format!("kpg-selftest-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p).map_err(|e| KpgError::io(&p, e))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Loads onto the GPU the selftest was given (`kpg selftest --gpu N`), never a default one.
fn on_gpu(dev: &CudaDevice) -> crate::model::llama::LoadOptions<'static> {
    crate::model::llama::LoadOptions {
        device: DeviceKind::Cuda,
        gpu: dev.ordinal(),
        adapter: None,
    }
}

fn synth_tiny(dir: &Path, dtype: DType) -> Result<()> {
    crate::synth::synth_llama(&crate::synth::llama_preset("tiny")?, dtype, 7, dir)?;
    crate::select::config::SelectorConfig::default().write(dir)
}

/// Logits of whole sequences in two cache layouts, then greedy continuations of a batch of
/// prompts: every token the GPU picks must be a maximum of the CPU's logits within bf16 error
/// (an exact-equality criterion would fail on near-ties that rounding legitimately breaks).
fn forward_check(dev: &CudaDevice) -> Result<Vec<CheckResult>> {
    let mut rows = Vec::new();
    for dtype in [DType::F32, DType::BF16] {
        let tmp = TempDir::new(&format!("llama-{dtype}"))?;
        synth_tiny(&tmp.0, dtype)?;
        let cpu = Llama::load(&tmp.0)?;
        let gpu = Llama::load_with(&tmp.0, &on_gpu(dev))?;
        let vocab = cpu.config.vocab_size;
        let mut rng = Rng::new(21);
        let ids: Vec<u32> = (0..333).map(|_| rng.below(vocab) as u32).collect();
        let layouts = [
            RunOptions::default(),
            RunOptions {
                prefill_chunk: 7,
                block_size: 3,
            },
        ];
        let want = teacher_forced_logits(&cpu, &ids, &layouts[0])?;
        for opts in &layouts {
            let got = teacher_forced_logits(&gpu, &ids, opts)?;
            rows.push(compare_model(
                format!(
                    "llama {dtype} logits, chunk {} block {}",
                    opts.prefill_chunk, opts.block_size
                ),
                &got,
                &want,
                MODEL_BF16,
            ));
        }
        let prompts: Vec<Vec<u32>> = [1usize, 17, 200]
            .iter()
            .map(|&n| (0..n).map(|_| rng.below(vocab) as u32).collect())
            .collect();
        let cont = greedy_generate(&gpu, &prompts, 24, false, &layouts[1])?;
        let mut mismatch = None;
        'seqs: for (p, c) in prompts.iter().zip(&cont) {
            let full: Vec<u32> = p.iter().chain(c.iter()).copied().collect();
            let logits = teacher_forced_logits(&cpu, &full, &layouts[0])?;
            for (step, &tok) in c.iter().enumerate() {
                let row = &logits[(p.len() - 1 + step) * vocab..(p.len() + step) * vocab];
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let slack = 2.0 * (BF16.atol + BF16.rtol * max.abs() as f64) as f32;
                if row[tok as usize] < max - slack {
                    mismatch = Some(format!(
                        "prompt of {}: step {step} chose {tok} (CPU logit {}, max {max})",
                        p.len(),
                        row[tok as usize]
                    ));
                    break 'seqs;
                }
            }
        }
        rows.push(CheckResult::exact(
            format!("llama {dtype} greedy, batch of 3"),
            cont.iter().map(|c| c.len()).sum(),
            mismatch,
        ));
    }
    Ok(rows)
}

/// The selector end to end on both devices: per document, decisions equal and P(true) within
/// 0.02, up to the first candidate whose CPU P(true) is within 0.02 of one half (past a decision
/// rounding can flip, later decisions see a different history).
fn selection_check(dev: &CudaDevice) -> Result<Vec<CheckResult>> {
    let tmp = TempDir::new("selector")?;
    synth_tiny(&tmp.0, DType::BF16)?;
    let docs: Vec<String> = (0..12)
        .map(|i| to_input_line(&synthetic_document(i, 40 + 17 * i, 1 + i % 9)))
        .collect();
    let run = |opts: crate::model::llama::LoadOptions| -> Result<Vec<Value>> {
        let selector = Selector::load_with(&tmp.0, &opts)?;
        let mut out = Vec::new();
        let lines: Vec<Result<String>> = docs.iter().map(|d| Ok(d.clone())).collect();
        select_lines(
            &selector,
            numbered(lines),
            &SelectOptions::default(),
            |l| {
                out.push(serde_json::from_str(l).expect("kpg writes JSON"));
                Ok(())
            },
            |_| {},
        )?;
        Ok(out)
    };
    let want = run(crate::model::llama::LoadOptions::default())?;
    let got = run(on_gpu(dev))?;
    let (mut compared, mut worst, mut mismatch) = (0, 0f64, None);
    for (g, w) in got.iter().zip(&want) {
        let (gc, wc) = (&g["candidates"], &w["candidates"]);
        let n = wc.as_array().map_or(0, |a| a.len());
        for k in 0..n {
            let wp = wc[k]["p_true"].as_f64().unwrap_or(f64::NAN);
            let gp = gc[k]["p_true"].as_f64().unwrap_or(f64::NAN);
            let d = (gp - wp).abs();
            compared += 1;
            worst = worst.max(d);
            // NaN (a missing p_true) fails too.
            if d.is_nan() || d > 0.02 || gc[k]["selected"] != wc[k]["selected"] {
                mismatch.get_or_insert(format!(
                    "{} candidate {k}: p_true {gp} vs {wp}, selected {} vs {}",
                    w["id"], gc[k]["selected"], wc[k]["selected"]
                ));
            }
            if (wp - 0.5).abs() < 0.02 {
                break;
            }
        }
    }
    if got.len() != want.len() {
        mismatch = Some(format!("{} output lines against {}", got.len(), want.len()));
    }
    let mut row = CheckResult::exact("selection: decisions and p_true", compared, mismatch);
    row.max_abs = worst;
    Ok(vec![row])
}

/// A golden sequence's ids and its logits, flattened (`{"ids": [...], "logits": [[...], ...]}`).
fn ids_and_logits(seq: &Value) -> (Vec<u32>, Vec<f32>) {
    let ids = seq["ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_u64().map(|x| x as u32))
        .collect();
    let logits = seq["logits"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r.as_array().into_iter().flatten())
        .filter_map(|v| v.as_f64().map(|x| x as f32))
        .collect();
    (ids, logits)
}

/// The LoRA fixtures of `tests/fixtures/lora` (peft's logits, f32) with the adapter merged into
/// the bf16 weights on the GPU.
fn lora_check(dev: &CudaDevice) -> Result<Vec<CheckResult>> {
    let root = std::env::var_os("KPG_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("tests/fixtures"));
    let Ok(entries) = std::fs::read_dir(root.join("lora")) else {
        return Ok(vec![CheckResult::skipped(
            "lora fixtures",
            format!(
                "skipped: no {} (run from the repository root or set KPG_FIXTURES)",
                root.join("lora").display()
            ),
        )]);
    };
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    dirs.sort();
    let mut rows = Vec::new();
    for dir in dirs {
        let path = dir.join("golden.json");
        let text = std::fs::read_to_string(&path).map_err(|e| KpgError::io(&path, e))?;
        let golden: Value =
            serde_json::from_str(&text).map_err(|e| KpgError::Json { path, source: e })?;
        let base = root
            .join("llama")
            .join(golden["base"].as_str().unwrap_or(""));
        let model = Llama::load_with(
            &base,
            &crate::model::llama::LoadOptions {
                adapter: Some(&dir),
                ..on_gpu(dev)
            },
        )?;
        let case = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        for (i, seq) in golden["sequences"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let (ids, want) = ids_and_logits(seq);
            let got = teacher_forced_logits(&model, &ids, &RunOptions::default())?;
            rows.push(compare_model(
                format!("lora {case} seq {i} logits"),
                &got,
                &want,
                MODEL_BF16,
            ));
        }
    }
    Ok(rows)
}

fn golden_check(dev: &CudaDevice) -> Result<Vec<CheckResult>> {
    let root = std::env::var_os("KPG_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("tests/fixtures"))
        .join("llama");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Ok(vec![CheckResult::skipped(
            "transformers fixtures",
            format!(
                "skipped: no {} (run from the repository root or set KPG_FIXTURES)",
                root.display()
            ),
        )]);
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("golden.json").exists())
        .collect();
    dirs.sort();
    let mut rows = Vec::new();
    for dir in dirs {
        let case = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let text = std::fs::read_to_string(dir.join("golden.json"))
            .map_err(|e| KpgError::io(dir.join("golden.json"), e))?;
        let golden: Value = serde_json::from_str(&text).map_err(|e| KpgError::Json {
            path: dir.join("golden.json"),
            source: e,
        })?;
        let model = Llama::load_with(&dir, &on_gpu(dev))?;
        for (i, seq) in golden["sequences"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let (ids, want) = ids_and_logits(seq);
            let got = teacher_forced_logits(&model, &ids, &RunOptions::default())?;
            rows.push(compare_model(
                format!("{case} seq {i} logits"),
                &got,
                &want,
                MODEL_BF16,
            ));
        }
    }
    Ok(rows)
}
