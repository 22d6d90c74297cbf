//! `kpg bench`: throughput figures as JSON on stdout, comparable between runs and with the peers
//! in `tools/`.

pub(super) mod attention;
mod generate;
mod ot;
pub(super) mod prefill;
mod tag;
pub(super) mod train;

use crate::model::llama::LoadOptions;
use std::time::Instant;

use serde_json::json;

use super::{print_line, BenchCommand, BenchSelectArgs};
use crate::error::{KpgError, Result};
use crate::select::document::{synthetic_document, to_input_line, SelectDocument};
use crate::select::run::select_lines;
use crate::select::{CandidateOrder, Selector};

pub fn bench(cmd: BenchCommand) -> Result<i32> {
    match cmd {
        BenchCommand::Select(args) => bench_select(args),
        BenchCommand::Generate(args) => generate::bench_generate(args),
        BenchCommand::Train(args) => train::bench_train(args),
        BenchCommand::Ot(args) => ot::bench_ot(args),
        BenchCommand::Tag(args) => tag::bench_tag(args),
        BenchCommand::Prefill(args) => prefill::bench_prefill(args),
        BenchCommand::Ceilings(args) => prefill::bench_ceilings(args),
        BenchCommand::Attention(args) => attention::bench_attention(args),
    }
}

fn bench_select(args: BenchSelectArgs) -> Result<i32> {
    let opts = args.select.options(args.device)?;
    let selector = Selector::load_with(
        &args.selector,
        &LoadOptions {
            device: args.device,
            gpu: args.gpu,
            adapter: args.adapter.as_deref(),
        },
    )?;
    let docs: Vec<SelectDocument> = (0..args.docs)
        .map(|i| synthetic_document(i, args.words, args.candidates))
        .collect();
    let lines: Vec<Result<String>> = docs.iter().map(|d| Ok(to_input_line(d))).collect();
    let mut outputs = Vec::with_capacity(docs.len());
    let start = Instant::now();
    let summary = select_lines(
        &selector,
        crate::select::run::numbered(lines),
        &opts,
        |l| {
            outputs.push(l.to_string());
            Ok(())
        },
        |_| {},
    )?;
    let secs = start.elapsed().as_secs_f64();
    if summary.failed > 0 {
        return Err(KpgError::InvalidArgument(format!(
            "{} benchmark documents failed (first: {})",
            summary.failed,
            outputs.iter().find(|l| l.contains("\"error\"")).unwrap()
        )));
    }
    if let Some(path) = &args.dump {
        dump_programs(&selector, &docs, &outputs, &opts, path)?;
    }
    let c = &selector.model.config;
    // The full LM head would be a [vocab, hidden] product per choice; the label head does two rows.
    let flops_saved = summary.stats.choice_steps as f64
        * 2.0
        * (c.vocab_size as f64 - 2.0)
        * c.hidden_size as f64;
    print_line(
        &json!({
            "bench": "select",
            "device": device_name(&selector)?,
            "threads": rayon::current_num_threads(),
            "selector": args.selector,
            "mode": if args.select.rerank { "rerank" } else { "sequence" },
            "docs": args.docs,
            "candidates_per_doc": args.candidates,
            "words_per_abstract": args.words,
            "seconds": secs,
            "documents_per_s": args.docs as f64 / secs,
            "prompt_tokens": summary.stats.prompt_tokens,
            "prompt_tokens_per_s": summary.stats.prompt_tokens as f64 / secs,
            "choice_steps": summary.stats.choice_steps,
            "choice_steps_per_s": summary.stats.choice_steps as f64 / secs,
            "forward_passes": summary.stats.forward_passes,
            "peak_kv_blocks": summary.stats.peak_blocks_in_use,
            "block_size": args.select.cache.block_size,
            "lm_head_flops_saved": flops_saved,
        })
        .to_string(),
    )?;
    Ok(0)
}

/// "cpu", or the GPU's name and memory.
fn device_name(selector: &Selector) -> Result<String> {
    match selector.model.device() {
        crate::backend::DeviceKind::Cpu => Ok("cpu".into()),
        #[cfg(feature = "cuda")]
        crate::backend::DeviceKind::Cuda => crate::backend::cuda::CudaDevice::new(0)?.describe(),
        #[cfg(not(feature = "cuda"))]
        crate::backend::DeviceKind::Cuda => unreachable!("no CUDA model in a build without it"),
    }
}

/// Writes, per document, the whole token sequence with its label positions and kpg's decisions,
/// so that a peer can run exactly the same selection (`tools/peer_select.py`).
fn dump_programs(
    selector: &Selector,
    docs: &[SelectDocument],
    outputs: &[String],
    opts: &crate::select::run::SelectOptions,
    path: &std::path::Path,
) -> Result<()> {
    let mut records = Vec::with_capacity(docs.len());
    for (doc, out) in docs.iter().zip(outputs) {
        let (_, group) = selector.group(doc, CandidateOrder::Confidence, opts.mode, false)?;
        let out: serde_json::Value = serde_json::from_str(out).expect("our own JSON");
        let selected: Vec<bool> = out["candidates"]
            .as_array()
            .map(|c| {
                c.iter()
                    .map(|c| c["selected"].as_bool().unwrap_or(false))
                    .collect()
            })
            .unwrap_or_default();
        let p_true: Vec<f64> = out["candidates"]
            .as_array()
            .map(|c| {
                c.iter()
                    .map(|c| c["p_true"].as_f64().unwrap_or(0.0))
                    .collect()
            })
            .unwrap_or_default();
        let programs: Vec<serde_json::Value> = group
            .members
            .iter()
            .map(|m| {
                let tokens: Vec<u32> = group.prefix.iter().chain(&m.tokens).copied().collect();
                let shift = group.prefix.len();
                json!({
                    "tokens": tokens,
                    "labels": m.labels.iter().map(|l| json!({"pos": l.pos + shift, "ids": l.ids})).collect::<Vec<_>>(),
                })
            })
            .collect();
        records.push(
            json!({"id": doc.id, "programs": programs, "selected": selected, "p_true": p_true}),
        );
    }
    let text = serde_json::to_string(&records).expect("plain values");
    std::fs::write(path, text).map_err(|e| KpgError::io(path, e))
}
