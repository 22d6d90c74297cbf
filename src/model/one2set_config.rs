//! `config.json` of a One2Set generator directory (`"architecture": "one2set"`): the sizes of the
//! Transformer encoder–decoder, the control codes, and the length limits. Fields are read one by one
//! so that a missing or malformed one is reported by name, as for LLaMA's config.
//!
//! ```json
//! {"architecture": "one2set", "vocab_size": 50000, "d_model": 512, "num_heads": 8,
//!  "ffn_dim": 2048, "encoder_layers": 6, "decoder_layers": 6, "num_control_codes": 20,
//!  "num_present_codes": 10, "max_keyphrase_len": 6, "max_source_len": 512,
//!  "layer_norm_eps": 1e-5, "dtype": "float32"}
//! ```
//!
//! The word embedding has `d_model` columns (jiacheng-ye/kg_one2set's `word_vec_size`, which its
//! decoder requires to equal `d_model`, since it adds the positions after `input_fc`).

use std::path::Path;

use serde_json::Value;

use super::config::{as_object, read_json, Fields};
use crate::error::Result;

/// Sizes and limits of a One2Set generator.
#[derive(Debug, Clone, PartialEq)]
pub struct One2SetConfig {
    /// Words the embedding and the output layer cover, the seven special tokens included.
    pub vocab_size: usize,
    pub d_model: usize,
    pub num_heads: usize,
    pub ffn_dim: usize,
    pub encoder_layers: usize,
    pub decoder_layers: usize,
    /// N: the control codes, one decoding slot each.
    pub num_control_codes: usize,
    /// The first this many codes are for present keyphrases, the rest for absent ones.
    pub num_present_codes: usize,
    /// Tokens a slot decodes, its `<eos>` included (One2Set's `max_kp_len`).
    pub max_keyphrase_len: usize,
    /// Source tokens the encoder reads; a longer source is cut to its first this many.
    pub max_source_len: usize,
    pub layer_norm_eps: f64,
    /// The dtype the weights were saved in; informative, the tensors' own dtypes decide.
    pub dtype: Option<String>,
}

impl One2SetConfig {
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        Self::from_json(&read_json(&path)?, &path)
    }

    pub fn from_json(value: &Value, path: &Path) -> Result<Self> {
        let obj = as_object(value, path)?;
        let f = Fields { obj, path };
        match f.opt_str("architecture")? {
            Some(a) if a == "one2set" => {}
            Some(a) => {
                return Err(f.err(
                    "architecture",
                    format!("`{a}` is not a One2Set generator (expected \"one2set\")"),
                ))
            }
            // A LLaMA directory where a generator was wanted: say what it is and where it goes.
            None if f.opt_str("model_type")?.is_some() => {
                return Err(f.err(
                    "architecture",
                    "missing: this is a Hugging Face LLaMA model (it has `model_type`), not a \
                     One2Set generator; a LLaMA model goes to --selector (kpg tag, kpg select) or \
                     --model (kpg debug), a generator to --generator",
                ))
            }
            None => return Err(f.err("architecture", "required field is missing (\"one2set\")")),
        }
        let c = One2SetConfig {
            vocab_size: f.req_usize("vocab_size")?,
            d_model: f.req_usize("d_model")?,
            num_heads: f.req_usize("num_heads")?,
            ffn_dim: f.req_usize("ffn_dim")?,
            encoder_layers: f.req_usize("encoder_layers")?,
            decoder_layers: f.req_usize("decoder_layers")?,
            num_control_codes: f.req_usize("num_control_codes")?,
            num_present_codes: f.req_usize("num_present_codes")?,
            max_keyphrase_len: f.req_usize("max_keyphrase_len")?,
            max_source_len: f.req_usize("max_source_len")?,
            layer_norm_eps: f.opt_f64("layer_norm_eps")?.unwrap_or(1e-5),
            dtype: f.opt_str("dtype")?,
        };
        if !c.d_model.is_multiple_of(c.num_heads) {
            return Err(f.err(
                "num_heads",
                format!("{} does not divide d_model = {}", c.num_heads, c.d_model),
            ));
        }
        if !c.d_model.is_multiple_of(2) {
            return Err(f.err(
                "d_model",
                format!("{} is odd; sinusoidal positions need pairs", c.d_model),
            ));
        }
        if c.num_present_codes > c.num_control_codes {
            return Err(f.err(
                "num_present_codes",
                format!(
                    "{} is more than num_control_codes = {}",
                    c.num_present_codes, c.num_control_codes
                ),
            ));
        }
        if c.vocab_size < crate::one2set::vocab::SPECIAL_TOKENS.len() {
            return Err(f.err(
                "vocab_size",
                format!(
                    "{} cannot hold the {} special tokens",
                    c.vocab_size,
                    crate::one2set::vocab::SPECIAL_TOKENS.len()
                ),
            ));
        }
        if !(c.layer_norm_eps > 0.0 && c.layer_norm_eps.is_finite()) {
            return Err(f.err("layer_norm_eps", "must be a positive number"));
        }
        // The position table (f32, one row per position) is allocated at load: name the field that
        // makes it impossible rather than abort in the allocator.
        let (field, rows) = if c.max_source_len.saturating_add(1) >= c.max_keyphrase_len {
            ("max_source_len", c.max_source_len.saturating_add(1))
        } else {
            ("max_keyphrase_len", c.max_keyphrase_len)
        };
        crate::memory::check_fits(crate::memory::product(&[rows, c.d_model, 4]), || {
            format!(
                "the position table ({field} = {rows}, d_model = {})",
                c.d_model
            )
        })
        .map_err(|e| f.err(field, format!("too large: {e}")))?;
        Ok(c)
    }

    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "architecture": "one2set",
            "vocab_size": self.vocab_size,
            "d_model": self.d_model,
            "num_heads": self.num_heads,
            "ffn_dim": self.ffn_dim,
            "encoder_layers": self.encoder_layers,
            "decoder_layers": self.decoder_layers,
            "num_control_codes": self.num_control_codes,
            "num_present_codes": self.num_present_codes,
            "max_keyphrase_len": self.max_keyphrase_len,
            "max_source_len": self.max_source_len,
            "layer_norm_eps": self.layer_norm_eps,
            "dtype": self.dtype,
        })
    }

    pub fn head_dim(&self) -> usize {
        self.d_model / self.num_heads
    }
}
