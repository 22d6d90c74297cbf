//! A llama-architecture GGUF file as kpg's LLaMA model: the config from the metadata, the tensors
//! renamed to the Hugging Face names, and the query and key projections put back in the Hugging
//! Face row order. The weights stay in their ggml blocks in the file's memory map (compute works on
//! the blocks: `backend::cpu::quant`), or, with [`WeightMode::F32`], are dequantized to f32 at load
//! (the exact path, for comparison with an f32 reference).
//!
//! llama.cpp's converter (`convert_hf_to_gguf.py`, `LlamaModel.permute`) reorders the rows of
//! every head of `q_proj` and `k_proj` so that ggml's RoPE, which rotates adjacent pairs, computes
//! what transformers' rotate-half RoPE does: within a head of `d` rows, HF row `i·d/2 + j` (i in
//! {0, 1}) is stored as row `2j + i`. Loading undoes it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::json;

use super::dequant::{dequantize, supported};
use super::header::{Header, TensorInfo, Value};
use super::types::GgmlType;
use super::GgufFile;
use crate::error::{KpgError, Result};
use crate::model::config::{LlamaConfig, RopeScaling};
use crate::model::weights::{DType, TensorRef, WeightFiles};

/// How a GGUF file's quantized weights are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightMode {
    /// In their blocks, in the memory map: resident memory about the file's size.
    Quantized,
    /// Dequantized to f32 at load: exact against an f32 reference, four to eight times the memory.
    F32,
}

static DEQUANTIZE: AtomicBool = AtomicBool::new(false);

/// Sets how this process loads GGUF weights from now on (the CLI's `--gguf-weights`).
pub fn set_weight_mode(mode: WeightMode) {
    DEQUANTIZE.store(mode == WeightMode::F32, Ordering::Relaxed);
}

pub fn weight_mode() -> WeightMode {
    if DEQUANTIZE.load(Ordering::Relaxed) {
        WeightMode::F32
    } else {
        WeightMode::Quantized
    }
}

fn gguf_err(path: &Path, reason: impl Into<String>) -> KpgError {
    KpgError::Gguf {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The model's config, from `{arch}.*` and `tokenizer.ggml.*` metadata, validated as a
/// `config.json` would be.
pub fn config(file: &GgufFile) -> Result<LlamaConfig> {
    let (h, path) = (&file.header, file.path.as_path());
    let arch = h
        .architecture()
        .ok_or_else(|| gguf_err(path, "metadata key `general.architecture` is missing"))?;
    if arch != "llama" {
        return Err(gguf_err(
            path,
            format!("architecture `{arch}` is not supported (llama is)"),
        ));
    }
    let int = |key: &str| -> Result<Option<u64>> {
        match h.get(&format!("{arch}.{key}")) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                gguf_err(
                    path,
                    format!("`{arch}.{key}` is a {}, not an integer", v.type_name()),
                )
            }),
        }
    };
    let float = |key: &str| -> Result<Option<f64>> {
        match h.get(&format!("{arch}.{key}")) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                gguf_err(
                    path,
                    format!("`{arch}.{key}` is a {}, not a number", v.type_name()),
                )
            }),
        }
    };
    let required = |key: &str| -> Result<u64> {
        int(key)?.ok_or_else(|| gguf_err(path, format!("metadata key `{arch}.{key}` is missing")))
    };
    let hidden = required("embedding_length")?;
    let heads = required("attention.head_count")?;
    let vocab = match int("vocab_size")? {
        Some(v) => v,
        None => match h.get("tokenizer.ggml.tokens") {
            Some(Value::Array(tokens)) => tokens.len() as u64,
            _ => tensor(h, "token_embd.weight", path)?.dims[1],
        },
    };
    if let Some(kind) = h
        .get(&format!("{arch}.rope.scaling.type"))
        .and_then(Value::as_str)
    {
        if kind != "none" && kind != "linear" {
            return Err(gguf_err(
                path,
                format!("rope scaling `{kind}` is not supported (none, linear)"),
            ));
        }
    }
    let mut config = json!({
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": required("feed_forward_length")?,
        "num_hidden_layers": required("block_count")?,
        "num_attention_heads": heads,
        "num_key_value_heads": int("attention.head_count_kv")?.unwrap_or(heads),
        "vocab_size": vocab,
        "rms_norm_eps": float("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5),
        "rope_theta": float("rope.freq_base")?.unwrap_or(10_000.0),
        "max_position_embeddings": int("context_length")?.unwrap_or(2048),
        "tie_word_embeddings": !h.tensors.iter().any(|t| t.name == "output.weight"),
    });
    if let Some(d) = int("attention.key_length")? {
        config["head_dim"] = json!(d);
    }
    if let Some(factor) = float("rope.scaling.factor")? {
        if h.get(&format!("{arch}.rope.scaling.type"))
            .and_then(Value::as_str)
            == Some("linear")
        {
            config["rope_scaling"] = json!({"rope_type": "linear", "factor": factor});
        }
    }
    if let Some(id) = h.get("tokenizer.ggml.bos_token_id").and_then(Value::as_u64) {
        config["bos_token_id"] = json!(id);
    }
    let mut eos: Vec<u64> = Vec::new();
    for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
        if let Some(id) = h.get(key).and_then(Value::as_u64) {
            if !eos.contains(&id) {
                eos.push(id);
            }
        }
    }
    config["eos_token_id"] = json!(eos);
    let mut config = LlamaConfig::from_json(&config, path)?;
    if let Some(factors) = rope_factors(file, config.head_dim)? {
        config.rope.scaling = RopeScaling::Factors(factors);
    }
    Ok(config)
}

/// `rope_freqs.weight`, LLaMA 3.1's per-frequency RoPE divisors as llama.cpp's converter writes
/// them: head_dim / 2 positive f32 values.
fn rope_factors(file: &GgufFile, head_dim: usize) -> Result<Option<Vec<f64>>> {
    let (h, path) = (&file.header, file.path.as_path());
    let Some(t) = h.tensors.iter().find(|t| t.name == ROPE_FREQS) else {
        return Ok(None);
    };
    if t.ggml_type != GgmlType::F32 || t.dims.iter().product::<u64>() != (head_dim / 2) as u64 {
        return Err(gguf_err(
            path,
            format!(
                "`{ROPE_FREQS}` is {} {:?}, not F32 [{}] (head_dim / 2)",
                t.ggml_type,
                t.dims,
                head_dim / 2
            ),
        ));
    }
    let at = (h.data_offset + t.offset) as usize;
    let factors: Vec<f64> = file.bytes()[at..at + t.bytes as usize]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
        .collect();
    if let Some(bad) = factors.iter().find(|f| !(f.is_finite() && **f > 0.0)) {
        return Err(gguf_err(
            path,
            format!("`{ROPE_FREQS}` holds {bad}; RoPE factors must be positive"),
        ));
    }
    Ok(Some(factors))
}

/// The tensor of per-frequency RoPE factors: read into the config, not a weight.
const ROPE_FREQS: &str = "rope_freqs.weight";

fn tensor<'a>(h: &'a Header, name: &str, path: &Path) -> Result<&'a TensorInfo> {
    h.tensors
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| gguf_err(path, format!("tensor `{name}` is missing")))
}

/// The Hugging Face name of a GGUF tensor of the llama architecture.
fn hf_name(name: &str) -> Option<String> {
    let fixed = match name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(n) = fixed {
        return Some(n.to_string());
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let hf = match part {
        "attn_norm.weight" => "input_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}"))
}

/// Every tensor of the file, renamed, (q, k) put back in HF row order, held as `mode` says.
pub fn weights(
    file: &Arc<GgufFile>,
    config: &LlamaConfig,
    mode: WeightMode,
) -> Result<WeightFiles> {
    let (h, path) = (&file.header, file.path.as_path());
    let mut tensors = Vec::new();
    for t in h.tensors.iter().filter(|t| t.name != ROPE_FREQS) {
        let Some(name) = hf_name(&t.name) else {
            return Err(gguf_err(
                path,
                format!("tensor `{}` is not one of a llama model's", t.name),
            ));
        };
        if !supported(t.ggml_type) {
            return Err(gguf_err(
                path,
                format!(
                    "tensor `{}` has type {}, which kpg cannot read (F32, F16, BF16, Q4_0, Q4_1, \
                     Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)",
                    t.name, t.ggml_type
                ),
            ));
        }
        // ggml dims run from the contiguous one; Hugging Face shapes from the outermost.
        let shape: Vec<usize> = t.dims.iter().rev().map(|&d| d as usize).collect();
        let heads = if name.ends_with("self_attn.q_proj.weight") {
            Some(config.num_attention_heads)
        } else if name.ends_with("self_attn.k_proj.weight") {
            Some(config.num_key_value_heads)
        } else {
            None
        };
        tensors.push((name, shape, heads, t));
    }
    match mode {
        WeightMode::F32 => dequantized(file, tensors),
        WeightMode::Quantized => in_blocks(file, tensors),
    }
}

type Entry<'a> = (String, Vec<usize>, Option<usize>, &'a TensorInfo);

/// The weights in place in the map; only the permuted q and k rows are copied (whole rows of
/// blocks, so the blocks move unchanged).
fn in_blocks(file: &Arc<GgufFile>, tensors: Vec<Entry<'_>>) -> Result<WeightFiles> {
    let (h, bytes) = (&file.header, file.bytes());
    let mut owned: Vec<u8> = Vec::new();
    let mut index = Vec::with_capacity(tensors.len());
    for (name, shape, heads, t) in tensors {
        let dtype = match t.ggml_type {
            GgmlType::F32 => DType::F32,
            GgmlType::F16 => DType::F16,
            GgmlType::BF16 => DType::BF16,
            q => DType::Quant(q),
        };
        let at = (h.data_offset + t.offset) as usize;
        let len = t.bytes as usize;
        let (shard, start) = match heads {
            Some(heads) => {
                let start = owned.len();
                owned.extend_from_slice(&bytes[at..at + len]);
                let rows = shape[0];
                let row_bytes = len / rows.max(1);
                unpermute_rows(&mut owned[start..], heads, rows / heads.max(1), row_bytes);
                (1, start)
            }
            None => (0, at),
        };
        index.push(TensorRef {
            name,
            shard,
            start,
            end: start + len,
            dtype,
            shape,
        });
    }
    Ok(WeightFiles::from_gguf(file.clone(), owned, index))
}

/// Every tensor dequantized to f32, in one owned buffer.
fn dequantized(file: &GgufFile, tensors: Vec<Entry<'_>>) -> Result<WeightFiles> {
    let (h, path) = (&file.header, file.path.as_path());
    let total: usize = tensors
        .iter()
        .map(|(_, shape, _, _)| shape.iter().product::<usize>())
        .sum();
    crate::memory::check_fits(total as u128 * 4, || {
        format!(
            "{}: the weights dequantized to f32 ({total} values; without --gguf-weights f32 they \
             stay quantized)",
            path.display()
        )
    })?;
    let bytes = file.bytes();
    let mut data = vec![0f32; total];
    let mut index = Vec::with_capacity(tensors.len());
    let mut start = 0;
    for (name, shape, heads, t) in tensors {
        let n: usize = shape.iter().product();
        let at = (h.data_offset + t.offset) as usize;
        let src = &bytes[at..at + t.bytes as usize];
        let out = &mut data[start..start + n];
        dequantize(t.ggml_type, src, out).map_err(|e| gguf_err(path, e))?;
        if let Some(heads) = heads {
            unpermute_rows(out, heads, shape[0] / heads.max(1), shape[1]);
        }
        index.push((name, shape, start));
        start += n;
    }
    Ok(WeightFiles::from_f32(path, data, index))
}

/// Undoes llama.cpp's per-head row interleave: stored row `2j + i` of a head is HF row
/// `i·d/2 + j`. `w` is `[heads·d, cols]`: f32 values, or the bytes of rows of blocks.
fn unpermute_rows<T: Copy + Default>(w: &mut [T], heads: usize, d: usize, cols: usize) {
    if d < 2 || heads * d * cols != w.len() {
        return; // the shape check at load names the tensor
    }
    let half = d / 2;
    let mut head = vec![T::default(); d * cols];
    for h in 0..heads {
        let block = &mut w[h * d * cols..(h + 1) * d * cols];
        head.copy_from_slice(block);
        for j in 0..half {
            for i in 0..2 {
                let from = (2 * j + i) * cols;
                let to = (i * half + j) * cols;
                block[to..to + cols].copy_from_slice(&head[from..from + cols]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_go_back_to_the_hugging_face_order() {
        // One head of 4 rows, 1 column: HF rows [a0, a1, b0, b1] (halves a, b) are stored as
        // [a0, b0, a1, b1].
        let mut w = vec![0.0, 2.0, 1.0, 3.0, 10.0, 12.0, 11.0, 13.0];
        unpermute_rows(&mut w, 2, 4, 1);
        assert_eq!(w, [0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0]);
        assert_eq!(
            hf_name("blk.12.ffn_down.weight").unwrap(),
            "model.layers.12.mlp.down_proj.weight"
        );
        assert_eq!(hf_name("blk.x.attn_q.weight"), None);
    }
}
