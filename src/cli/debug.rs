//! `kpg debug logits` and `kpg debug generate`: the model seen from outside, as JSON, for golden
//! tests against transformers and for tools.

use crate::model::llama::LoadOptions;
use serde_json::json;

use super::{print_line, GenerateArgs, LoadArgs, LogitsArgs, ModelInput};
use crate::error::{KpgError, Result};
use crate::model::llama::generate::{greedy_generate_timed, teacher_forced_logits, RunOptions};
use crate::model::llama::Llama;

fn load(input: &ModelInput) -> Result<(Llama, Vec<u32>, RunOptions)> {
    if input.chunk == 0 || input.block_size == 0 {
        return Err(KpgError::InvalidArgument(
            "--chunk and --block-size must be at least 1".into(),
        ));
    }
    let model = Llama::load_with(
        &input.model,
        &LoadOptions {
            device: input.device,
            gpu: input.gpu,
            adapter: input.adapter.as_deref(),
        },
    )?;
    let ids = match (&input.ids, &input.text) {
        (Some(ids), _) => ids.clone(),
        (None, Some(text)) => match &model.tokenizer {
            Some(tok) => tok.encode(text, true)?,
            None => {
                return Err(KpgError::MissingFile {
                    path: input.model.join("tokenizer.json"),
                })
            }
        },
        (None, None) => Vec::new(),
    };
    if ids.is_empty() {
        return Err(KpgError::InvalidArgument("the input has no tokens".into()));
    }
    let opts = RunOptions {
        prefill_chunk: input.chunk,
        block_size: input.block_size,
    };
    Ok((model, ids, opts))
}

pub fn logits(args: LogitsArgs) -> Result<i32> {
    let (model, ids, opts) = load(&args.input)?;
    let logits = teacher_forced_logits(&model, &ids, &opts)?;
    let rows: Vec<&[f32]> = logits.chunks(model.config.vocab_size).collect();
    print_line(&json!({ "logits": rows }).to_string())?;
    Ok(0)
}

pub fn generate(args: GenerateArgs) -> Result<i32> {
    let (model, ids, opts) = load(&args.input)?;
    let (out, t) =
        greedy_generate_timed(&model, &[ids], args.max_new_tokens, !args.ignore_eos, &opts)?;
    let decode_per_s = if t.decode_seconds > 0.0 {
        t.decode_steps as f64 / t.decode_seconds
    } else {
        0.0
    };
    print_line(
        &json!({
            "ids": out[0],
            "prefill_seconds": t.prefill_seconds,
            "decode_steps": t.decode_steps,
            "decode_seconds": t.decode_seconds,
            "decode_tokens_per_s": decode_per_s,
        })
        .to_string(),
    )?;
    Ok(0)
}

/// Resident set size of this process in bytes (Linux; 0 where /proc is not available).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// `kpg debug tokenize`: a text's ids, with the tokenizer alone (the weights are not loaded).
pub fn tokenize(args: super::TokenizeArgs) -> Result<i32> {
    let tokenizer = if crate::gguf::is_gguf(&args.model) {
        let file = crate::gguf::GgufFile::open(&args.model)?;
        crate::gguf::tokenizer::build(&file)?.ok_or_else(|| KpgError::Gguf {
            path: args.model.clone(),
            reason: "it has no tokenizer (no `tokenizer.ggml.tokens`)".into(),
        })?
    } else {
        crate::tokenizer::Tokenizer::from_file(&args.model.join("tokenizer.json"))?
    };
    let ids = tokenizer.encode(&args.text, true)?;
    print_line(&json!({ "ids": ids }).to_string())?;
    Ok(0)
}

/// `kpg debug gguf`: the header as JSON.
pub fn gguf_header(args: LoadArgs) -> Result<i32> {
    use crate::gguf::header::Value as G;
    /// Arrays longer than this print their first items and their length.
    const SHOWN: usize = 8;
    fn value(v: &G) -> serde_json::Value {
        match v {
            G::U8(x) => json!(x),
            G::I8(x) => json!(x),
            G::U16(x) => json!(x),
            G::I16(x) => json!(x),
            G::U32(x) => json!(x),
            G::I32(x) => json!(x),
            G::F32(x) => json!(x),
            G::Bool(x) => json!(x),
            G::String(x) => json!(x),
            G::U64(x) => json!(x),
            G::I64(x) => json!(x),
            G::F64(x) => json!(x),
            G::Array(items) if items.len() > SHOWN => json!({
                "length": items.len(),
                "first": items.iter().take(SHOWN).map(value).collect::<Vec<_>>(),
            }),
            G::Array(items) => json!(items.iter().map(value).collect::<Vec<_>>()),
        }
    }
    let file = crate::gguf::GgufFile::open(&args.model)?;
    let h = &file.header;
    let metadata: serde_json::Map<String, serde_json::Value> = h
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), value(v)))
        .collect();
    let tensors: Vec<serde_json::Value> = h
        .tensors
        .iter()
        .map(|t| {
            json!({"name": t.name, "type": t.ggml_type.to_string(), "dims": t.dims,
                   "offset": t.offset, "bytes": t.bytes})
        })
        .collect();
    print_line(
        &json!({
            "version": h.version,
            "alignment": h.alignment,
            "data_offset": h.data_offset,
            "metadata": metadata,
            "tensors": tensors,
        })
        .to_string(),
    )?;
    Ok(0)
}

pub fn load_cost(args: LoadArgs) -> Result<i32> {
    let rss_before = resident_bytes();
    let start = std::time::Instant::now();
    let model = Llama::load(&args.model)?;
    let seconds = start.elapsed().as_secs_f64();
    let rss_after = resident_bytes();
    // The load above includes the scan for NaN/Inf weights; time it again on its own, with the
    // pages now in memory, so that its cost can be told from the rest.
    let scan = std::time::Instant::now();
    model.weights().check_finite()?;
    let scan_seconds = scan.elapsed().as_secs_f64();
    let c = &model.config;
    print_line(
        &json!({
            "model": args.model,
            "layers": c.num_hidden_layers,
            "hidden_size": c.hidden_size,
            "vocab_size": c.vocab_size,
            "load_seconds": seconds,
            "finite_scan_seconds": scan_seconds,
            "rss_before_mb": rss_before as f64 / 1e6,
            "rss_after_mb": rss_after as f64 / 1e6,
            "rss_added_mb": (rss_after.saturating_sub(rss_before)) as f64 / 1e6,
        })
        .to_string(),
    )?;
    Ok(0)
}
