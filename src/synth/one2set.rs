//! `kpg synth --arch one2set`: a random-weight One2Set generator directory (`config.json`,
//! `model.safetensors` with the tensors of [`crate::model::one2set`], a word-level
//! `tokenizer.json`), for tests and throughput benchmarks. Values are a pure function of (seed,
//! tensor, element) and are streamed to disk.
//!
//! Initialisation keeps activations of order one so that decoding is not decided by rounding:
//! matrices uniform with std 1/sqrt(fan_in), LayerNorm weights near 1, biases near 0, the word
//! embedding as the authors initialise it (uniform ±0.1; it is scaled by sqrt(d) on input) and the
//! control codes with std 1, so that slots decode different phrases.
//!
//! The vocabulary is the seven special tokens, `<digit>` and punctuation, common words of
//! scientific abstracts, then fillers `w<id>`; or any `tokenizer.json` given (for example one
//! written by `kpg vocab`), whose size then sets `vocab_size`.

use std::path::Path;

use rayon::prelude::*;

use super::writer::{write_safetensors, TensorSpec};
use super::{splitmix64, uniform};
use crate::backend::cpu::convert;
use crate::error::{KpgError, Result};
use crate::model::one2set::tensor_specs;
use crate::model::one2set_config::One2SetConfig;
use crate::model::weights::DType;
use crate::one2set::vocab::{Vocab, SPECIAL_TOKENS};

pub const ONE2SET_PRESETS: [&str; 3] = ["tiny", "small", "base"];

/// The config of a named One2Set preset.
pub fn one2set_preset(name: &str) -> Result<One2SetConfig> {
    let base = |d, heads, ffn, layers, vocab| One2SetConfig {
        vocab_size: vocab,
        d_model: d,
        num_heads: heads,
        ffn_dim: ffn,
        encoder_layers: layers,
        decoder_layers: layers,
        num_control_codes: 20,
        num_present_codes: 10,
        max_keyphrase_len: 6,
        max_source_len: 512,
        layer_norm_eps: 1e-5,
        dtype: None,
    };
    Ok(match name {
        // Well under a megabyte: unit and integration tests.
        "tiny" => base(64, 4, 128, 2, 1000),
        // What a 2-core CPU trains in hours: `kpg train generator`'s default.
        "small" => base(256, 4, 1024, 3, 20_000),
        // The reference sizes of the One2Set paper.
        "base" => base(512, 8, 2048, 6, 50_000),
        other => {
            return Err(KpgError::InvalidArgument(format!(
                "unknown one2set preset `{other}` (choose from {})",
                ONE2SET_PRESETS.join(", ")
            )))
        }
    })
}

/// Words of scientific abstracts that the synthetic vocabulary starts with.
const COMMON_WORDS: &str = "<digit> , . ( ) ' the of and a to in for is we on with that by this \
are an as be from our which can based using model method system data network learning problem \
paper results approach algorithm performance proposed show information time design analysis \
control new two also set use such these it has or at its than between have been different one \
high models process methods systems keyphrase generation language neural attention encoder \
decoder copy mechanism optimal transport sinkhorn selection precision recall present absent \
graph retrieval index document corpus semantic search query ranking training evaluation text \
classification clustering detection recognition image video speech knowledge representation \
optimization distributed parallel computing software security privacy wireless sensor mobile \
power energy efficient estimation simulation linear nonlinear dynamic adaptive robust fuzzy \
logic probabilistic bayesian inference markov random field kernel support vector machine \
regression feature extraction segmentation tracking planning scheduling routing protocol \
database query processing web service cloud storage memory cache compiler program verification";

/// The synthetic vocabulary of `size` words.
pub fn synthetic_vocab(size: usize) -> Vocab {
    let mut words: Vec<String> = SPECIAL_TOKENS.iter().map(|s| s.to_string()).collect();
    let mut seen: std::collections::HashSet<String> = words.iter().cloned().collect();
    for w in COMMON_WORDS.split_whitespace() {
        if words.len() < size && seen.insert(w.to_string()) {
            words.push(w.to_string());
        }
    }
    while words.len() < size {
        let w = format!("w{}", words.len());
        seen.insert(w.clone());
        words.push(w);
    }
    Vocab::from_words(words).expect("distinct words, special tokens first")
}

/// (centre, half-width) of the uniform distribution tensor `name` of `shape` is drawn from.
fn init_range(name: &str, shape: &[usize]) -> (f32, f32) {
    let sqrt3 = 3f32.sqrt();
    if name == "embed.weight" {
        (0.0, 0.1)
    } else if name == "decoder.control_code.weight" {
        (0.0, sqrt3)
    } else if name.ends_with(".bias") {
        (0.0, 0.1)
    } else if shape.len() == 1 {
        (1.0, 0.1)
    } else {
        (0.0, sqrt3 / (shape[1] as f32).sqrt())
    }
}

/// Writes a random-weight One2Set generator directory. With `vocab`, its words are the vocabulary
/// and its size replaces `config.vocab_size`.
pub fn synth_one2set(
    config: &One2SetConfig,
    dtype: DType,
    seed: u64,
    vocab: Option<Vocab>,
    out: &Path,
) -> Result<One2SetConfig> {
    std::fs::create_dir_all(out).map_err(|e| KpgError::io(out, e))?;
    let mut config = config.clone();
    let vocab = match vocab {
        Some(v) => {
            config.vocab_size = v.len();
            v
        }
        None => synthetic_vocab(config.vocab_size),
    };
    config.dtype = Some(dtype.torch_name().into());
    let config_path = out.join("config.json");
    std::fs::write(
        &config_path,
        serde_json::to_string_pretty(&config.to_json()).expect("plain values"),
    )
    .map_err(|e| KpgError::io(&config_path, e))?;
    vocab.write(&out.join("tokenizer.json"))?;

    let tensors: Vec<TensorSpec> = tensor_specs(&config)
        .into_iter()
        .map(|(name, shape)| TensorSpec { name, shape })
        .collect();
    let mut values = Vec::new();
    write_safetensors(
        &out.join("model.safetensors"),
        &tensors,
        dtype,
        |i, start, buf| {
            let spec = &tensors[i];
            let n = (1usize << 20).min(spec.numel() - start);
            let (centre, half_width) = init_range(&spec.name, &spec.shape);
            let key = splitmix64(seed ^ ((i as u64) << 40) ^ 0x0123_4567);
            values.resize(n, 0.0);
            values.par_iter_mut().enumerate().for_each(|(e, v)| {
                *v = centre + half_width * uniform(key.wrapping_add((start + e) as u64));
            });
            convert::from_f32(dtype, &values, buf);
        },
    )?;
    Ok(config)
}
