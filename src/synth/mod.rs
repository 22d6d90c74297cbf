//! `kpg synth`: random-weight models in the Hugging Face layout, for tests and throughput
//! benchmarks. Values are a pure function of (seed, tensor, element), generated in chunks and
//! streamed to disk, so even the 7B presets are written without holding the model in memory.

pub mod one2set;
pub mod tokenizer_json;
pub mod writer;

use std::path::Path;

use rayon::prelude::*;

use crate::backend::cpu::convert;
use crate::error::{KpgError, Result};
use crate::model::config::{LlamaConfig, RopeConfig, RopeScaling};
use crate::model::weights::DType;
use writer::{plan_shards, shard_name, write_index, write_safetensors, TensorSpec};

/// Models above this size are written as shards with an index, as transformers does.
const SHARD_BYTES: usize = 2 << 30;

pub const LLAMA_PRESETS: [&str; 4] = ["tiny", "small", "llama2-7b", "llama3-8b"];

/// The config of a named LLaMA preset.
pub fn llama_preset(name: &str) -> Result<LlamaConfig> {
    let base = |hidden, inter, layers, heads, kv, vocab| LlamaConfig {
        hidden_size: hidden,
        intermediate_size: inter,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kv,
        head_dim: hidden / heads,
        vocab_size: vocab,
        rms_norm_eps: 1e-5,
        rope: RopeConfig {
            theta: 10_000.0,
            scaling: RopeScaling::None,
        },
        max_position_embeddings: 4096,
        tie_word_embeddings: false,
        dtype: None,
        bos_token_id: Some(tokenizer_json::BOS_ID),
        eos_token_ids: vec![tokenizer_json::EOS_ID],
    };
    Ok(match name {
        // A few MB: unit and integration tests.
        "tiny" => base(128, 344, 4, 4, 2, 1024),
        // About 60M parameters: CPU throughput benchmarks that finish in seconds.
        "small" => base(768, 2048, 8, 12, 4, 8192),
        // The real shapes of LLaMA-2 7B.
        "llama2-7b" => base(4096, 11008, 32, 32, 32, 32000),
        // The real shapes of LLaMA-3.1 8B, with its rope scaling.
        "llama3-8b" => LlamaConfig {
            rope: RopeConfig {
                theta: 500_000.0,
                scaling: RopeScaling::Llama3 {
                    factor: 8.0,
                    low_freq_factor: 1.0,
                    high_freq_factor: 4.0,
                    original_max_position_embeddings: 8192.0,
                },
            },
            max_position_embeddings: 131_072,
            ..base(4096, 14336, 32, 32, 8, 128_256)
        },
        other => {
            return Err(KpgError::InvalidArgument(format!(
                "unknown preset `{other}` (choose from {})",
                LLAMA_PRESETS.join(", ")
            )))
        }
    })
}

/// Tensor names and shapes of a LLaMA checkpoint, in transformers' order.
pub fn llama_tensors(c: &LlamaConfig) -> Vec<TensorSpec> {
    let t = |name: String, shape: Vec<usize>| TensorSpec { name, shape };
    let h = c.hidden_size;
    let mut out = vec![t("model.embed_tokens.weight".into(), vec![c.vocab_size, h])];
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        out.push(t(
            format!("{p}.self_attn.q_proj.weight"),
            vec![c.q_dim(), h],
        ));
        out.push(t(
            format!("{p}.self_attn.k_proj.weight"),
            vec![c.kv_dim(), h],
        ));
        out.push(t(
            format!("{p}.self_attn.v_proj.weight"),
            vec![c.kv_dim(), h],
        ));
        out.push(t(
            format!("{p}.self_attn.o_proj.weight"),
            vec![h, c.q_dim()],
        ));
        out.push(t(
            format!("{p}.mlp.gate_proj.weight"),
            vec![c.intermediate_size, h],
        ));
        out.push(t(
            format!("{p}.mlp.up_proj.weight"),
            vec![c.intermediate_size, h],
        ));
        out.push(t(
            format!("{p}.mlp.down_proj.weight"),
            vec![h, c.intermediate_size],
        ));
        out.push(t(format!("{p}.input_layernorm.weight"), vec![h]));
        out.push(t(format!("{p}.post_attention_layernorm.weight"), vec![h]));
    }
    out.push(t("model.norm.weight".into(), vec![h]));
    if !c.tie_word_embeddings {
        out.push(t("lm_head.weight".into(), vec![c.vocab_size, h]));
    }
    out
}

pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in [-1, 1), a pure function of its key.
pub(crate) fn uniform(key: u64) -> f32 {
    (splitmix64(key) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
}

/// How tensor `spec` is initialised: (centre, half-width) of a uniform distribution. Matrices get
/// std 1/sqrt(fan_in) and embeddings std 1, so activations and logits are of order one and greedy
/// decoding is not a coin toss; norm weights sit near 1.
fn init_range(spec: &TensorSpec) -> (f32, f32) {
    let sqrt3 = 3f32.sqrt();
    if spec.shape.len() == 1 {
        (1.0, 0.1)
    } else if spec.name == "model.embed_tokens.weight" {
        (0.0, sqrt3)
    } else {
        (0.0, sqrt3 / (spec.shape[1] as f32).sqrt())
    }
}

/// Writes a random-weight LLaMA model directory with `config.json`, weights and `tokenizer.json`;
/// models over 2 GiB are sharded.
pub fn synth_llama(config: &LlamaConfig, dtype: DType, seed: u64, out: &Path) -> Result<()> {
    synth_llama_sharded(config, dtype, seed, out, SHARD_BYTES)
}

/// As [`synth_llama`], with shards of at most `shard_bytes` and an index when there are several.
pub fn synth_llama_sharded(
    config: &LlamaConfig,
    dtype: DType,
    seed: u64,
    out: &Path,
    shard_bytes: usize,
) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| KpgError::io(out, e))?;
    let mut config = config.clone();
    config.dtype = Some(dtype.torch_name().into());
    let config_path = out.join("config.json");
    std::fs::write(
        &config_path,
        serde_json::to_string_pretty(&config.to_json()).unwrap(),
    )
    .map_err(|e| KpgError::io(&config_path, e))?;
    let tok_path = out.join("tokenizer.json");
    let tok = tokenizer_json::trained_tokenizer(config.vocab_size.max(259));
    std::fs::write(&tok_path, serde_json::to_string(&tok).unwrap())
        .map_err(|e| KpgError::io(&tok_path, e))?;

    let tensors = llama_tensors(&config);
    let total: usize = tensors.iter().map(|t| t.numel() * dtype.size()).sum();
    let shards = if total > shard_bytes {
        plan_shards(&tensors, dtype, shard_bytes)
    } else {
        vec![(0..tensors.len()).collect()]
    };
    let mut values = Vec::new();
    for (s, members) in shards.iter().enumerate() {
        let specs: Vec<TensorSpec> = members.iter().map(|&i| tensors[i].clone()).collect();
        let path = if shards.len() == 1 {
            out.join("model.safetensors")
        } else {
            out.join(shard_name(s, shards.len()))
        };
        write_safetensors(&path, &specs, dtype, |local, start, buf| {
            let global = members[local];
            let spec = &tensors[global];
            let n = (1usize << 20).min(spec.numel() - start);
            let (centre, half_width) = init_range(spec);
            let key = splitmix64(seed ^ ((global as u64) << 40));
            values.resize(n, 0.0);
            values.par_iter_mut().enumerate().for_each(|(e, v)| {
                *v = centre + half_width * uniform(key.wrapping_add((start + e) as u64));
            });
            convert::from_f32(dtype, &values, buf);
        })?;
    }
    if shards.len() > 1 {
        write_index(out, &tensors, dtype, &shards)?;
    }
    Ok(())
}
