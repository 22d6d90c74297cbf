//! `config.json` of a Hugging Face LLaMA checkpoint, in both styles found in the wild:
//! transformers 4.x (`rope_theta`, `rope_scaling`, `torch_dtype`) and transformers 5.x
//! (`rope_parameters`, `dtype`). Fields are read one by one from the JSON so that a missing or
//! malformed one is reported by name.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{KpgError, Result};

/// How rotary frequencies are rescaled for long contexts (transformers' `rope_type`).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE: `inv_freq[i] = theta^(-2i/d)`.
    None,
    /// Position interpolation: every frequency divided by `factor`.
    Linear { factor: f64 },
    /// LLaMA 3.1: low frequencies divided by `factor`, high ones kept, a smooth ramp between.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
    /// Every frequency divided by its own factor (a GGUF file's `rope_freqs.weight`, which
    /// llama.cpp's converter writes for LLaMA 3.1 from the `Llama3` parameters).
    Factors(Vec<f64>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RopeConfig {
    pub theta: f64,
    pub scaling: RopeScaling,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f32,
    pub rope: RopeConfig,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// The dtype the checkpoint says it was saved in (`torch_dtype` or `dtype`); informative only,
    /// the tensors' own dtypes decide how they are read.
    pub dtype: Option<String>,
    pub bos_token_id: Option<u32>,
    /// Generation stops after any of these (config.json, overridden by generation_config.json).
    pub eos_token_ids: Vec<u32>,
}

impl LlamaConfig {
    /// Reads `dir/config.json`, and `dir/generation_config.json` when present for the stop tokens.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let mut config = Self::from_json(&read_json(&path)?, &path)?;
        let gen_path = dir.join("generation_config.json");
        if gen_path.exists() {
            let gen = read_json(&gen_path)?;
            let gen = as_object(&gen, &gen_path)?;
            if let Some(ids) = token_ids(gen, "eos_token_id", &gen_path)? {
                config.eos_token_ids = ids;
            }
        }
        Ok(config)
    }

    pub fn from_json(value: &Value, path: &Path) -> Result<Self> {
        let obj = as_object(value, path)?;
        let f = Fields { obj, path };

        // A generator where a LLaMA model was wanted: say what it is and where it goes.
        if f.opt_str("architecture")?.as_deref() == Some("one2set") {
            return Err(f.err(
                "architecture",
                "\"one2set\": this is a One2Set generator, not a LLaMA model; a generator goes \
                 to --generator (kpg tag, kpg generate), a LLaMA model to --selector or --model",
            ));
        }
        if let Some(model_type) = f.opt_str("model_type")? {
            if !matches!(model_type.as_str(), "llama" | "mistral") {
                return Err(f.err(
                    "model_type",
                    format!("`{model_type}` is not a LLaMA-architecture model"),
                ));
            }
        }
        for flag in ["attention_bias", "mlp_bias"] {
            if f.opt_bool(flag)?.unwrap_or(false) {
                return Err(f.err(flag, "biases in LLaMA projections are not supported"));
            }
        }
        if let Some(window) = obj.get("sliding_window") {
            if !window.is_null() {
                return Err(f.err(
                    "sliding_window",
                    "sliding-window attention is not supported",
                ));
            }
        }

        let hidden_size = f.req_usize("hidden_size")?;
        let num_attention_heads = f.req_usize("num_attention_heads")?;
        let num_key_value_heads = f
            .opt_usize("num_key_value_heads")?
            .unwrap_or(num_attention_heads);
        if num_key_value_heads == 0 || num_attention_heads % num_key_value_heads != 0 {
            return Err(f.err(
                "num_key_value_heads",
                format!(
                    "{num_key_value_heads} does not divide num_attention_heads = {num_attention_heads}"
                ),
            ));
        }
        let head_dim = match f.opt_usize("head_dim")? {
            Some(d) => d,
            None => {
                if hidden_size % num_attention_heads != 0 {
                    return Err(f.err(
                        "head_dim",
                        "absent, and hidden_size is not a multiple of num_attention_heads",
                    ));
                }
                hidden_size / num_attention_heads
            }
        };
        if head_dim % 2 != 0 {
            return Err(f.err("head_dim", format!("{head_dim} is odd; RoPE needs pairs")));
        }

        let rope = parse_rope(&f)?;
        let eos_token_ids = token_ids(obj, "eos_token_id", path)?.unwrap_or_default();
        let bos_token_id = token_ids(obj, "bos_token_id", path)?.and_then(|v| v.first().copied());

        Ok(LlamaConfig {
            hidden_size,
            intermediate_size: f.req_usize("intermediate_size")?,
            num_hidden_layers: f.req_usize("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            vocab_size: f.req_usize("vocab_size")?,
            rms_norm_eps: positive_f32(&f, "rms_norm_eps", 1e-6)?,
            rope,
            max_position_embeddings: f.opt_usize("max_position_embeddings")?.unwrap_or(2048),
            tie_word_embeddings: f.opt_bool("tie_word_embeddings")?.unwrap_or(false),
            dtype: match f.opt_str("torch_dtype")? {
                Some(d) => Some(d),
                None => f.opt_str("dtype")?,
            },
            bos_token_id,
            eos_token_ids,
        })
    }

    pub fn group_size(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    pub fn q_dim(&self) -> usize {
        self.num_attention_heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }

    /// Writes this config as a transformers 5.x `config.json`.
    pub fn to_json(&self) -> Value {
        let mut rope = Map::new();
        rope.insert("rope_theta".into(), self.rope.theta.into());
        match &self.rope.scaling {
            RopeScaling::None => {
                rope.insert("rope_type".into(), "default".into());
            }
            RopeScaling::Linear { factor } => {
                rope.insert("rope_type".into(), "linear".into());
                rope.insert("factor".into(), (*factor).into());
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                rope.insert("rope_type".into(), "llama3".into());
                rope.insert("factor".into(), (*factor).into());
                rope.insert("low_freq_factor".into(), (*low_freq_factor).into());
                rope.insert("high_freq_factor".into(), (*high_freq_factor).into());
                rope.insert(
                    "original_max_position_embeddings".into(),
                    (*original_max_position_embeddings as u64).into(),
                );
            }
            // No transformers rope_type says this; kpg's own reader does not take it either.
            RopeScaling::Factors(factors) => {
                rope.insert("rope_type".into(), "kpg_per_frequency_factors".into());
                rope.insert("factors".into(), factors.clone().into());
            }
        }
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "vocab_size": self.vocab_size,
            "rms_norm_eps": self.rms_norm_eps as f64,
            "rope_parameters": Value::Object(rope),
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "dtype": self.dtype,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_ids.first(),
            "hidden_act": "silu",
            "attention_bias": false,
            "mlp_bias": false,
        })
    }
}

/// `rope_parameters` (5.x) holds theta and the scaling together; 4.x keeps `rope_theta` at the top
/// level and the scaling, or null, in `rope_scaling` (whose type key is `rope_type` or, older, `type`).
fn parse_rope(f: &Fields) -> Result<RopeConfig> {
    let (params, field) = match (f.obj.get("rope_parameters"), f.obj.get("rope_scaling")) {
        (Some(p), _) if !p.is_null() => (Some(p), "rope_parameters"),
        (_, Some(s)) if !s.is_null() => (Some(s), "rope_scaling"),
        _ => (None, "rope_scaling"),
    };
    let params = match params {
        Some(Value::Object(m)) => Some(m),
        Some(_) => return Err(f.err(field, "must be an object")),
        None => None,
    };
    let sub = |key: &str| format!("{field}.{key}");
    let num = |m: &Map<String, Value>, key: &str| -> Result<Option<f64>> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| f.err(&sub(key), "must be a number")),
        }
    };
    // Every scaling value divides or scales frequencies: it must be a positive number.
    let req = |m: &Map<String, Value>, key: &str| -> Result<f64> {
        let v = num(m, key)?.ok_or_else(|| f.err(&sub(key), "missing"))?;
        if v > 0.0 && v.is_finite() {
            Ok(v)
        } else {
            Err(f.err(&sub(key), format!("must be a positive number, got {v:?}")))
        }
    };

    let (theta, theta_field) = match params.map(|m| num(m, "rope_theta")).transpose()?.flatten() {
        Some(t) => (t, sub("rope_theta")),
        None => (
            f.opt_f64("rope_theta")?.unwrap_or(10_000.0),
            "rope_theta".to_string(),
        ),
    };
    // The frequencies are theta^(-2i/d): theta at or below 1 gives no rotation or infinities.
    if !(theta > 1.0 && theta.is_finite()) {
        return Err(f.err(
            &theta_field,
            format!("must be a number above 1, got {theta:?}"),
        ));
    }
    let Some(m) = params else {
        return Ok(RopeConfig {
            theta,
            scaling: RopeScaling::None,
        });
    };
    let kind = match m.get("rope_type").or_else(|| m.get("type")) {
        None | Some(Value::Null) => "default".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(f.err(&sub("rope_type"), "must be a string")),
    };
    let scaling = match kind.as_str() {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: req(m, "factor")?,
        },
        "llama3" => {
            let low = req(m, "low_freq_factor")?;
            let high = req(m, "high_freq_factor")?;
            if high <= low {
                return Err(f.err(
                    &sub("high_freq_factor"),
                    "must be greater than low_freq_factor",
                ));
            }
            RopeScaling::Llama3 {
                factor: req(m, "factor")?,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: req(m, "original_max_position_embeddings")?,
            }
        }
        other => {
            return Err(f.err(
                &sub("rope_type"),
                format!("`{other}` is not supported (default, linear, llama3)"),
            ))
        }
    };
    Ok(RopeConfig { theta, scaling })
}

/// A float field that must be a positive, finite number that f32 can hold (an epsilon).
fn positive_f32(f: &Fields, key: &str, default: f64) -> Result<f32> {
    let v = f.opt_f64(key)?.unwrap_or(default);
    let as_f32 = v as f32;
    if !(v > 0.0 && as_f32 > 0.0 && as_f32.is_finite()) {
        return Err(f.err(key, format!("must be a positive number, got {v:?}")));
    }
    Ok(as_f32)
}

pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| KpgError::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| KpgError::Json {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn as_object<'a>(value: &'a Value, path: &Path) -> Result<&'a Map<String, Value>> {
    value
        .as_object()
        .ok_or_else(|| KpgError::config(path, "(top level)", "must be a JSON object"))
}

/// `eos_token_id` and `bos_token_id` are an integer, a list of integers, or null.
fn token_ids(obj: &Map<String, Value>, key: &str, path: &Path) -> Result<Option<Vec<u32>>> {
    let bad = || KpgError::config(path, key, "must be a token id or a list of token ids");
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(Some(vec![n
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(bad)?])),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(bad)
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(_) => Err(bad()),
    }
}

/// Typed access to a config's fields with errors that name the file and the field.
pub(crate) struct Fields<'a> {
    pub(crate) obj: &'a Map<String, Value>,
    pub(crate) path: &'a Path,
}

impl Fields<'_> {
    pub(crate) fn err(&self, field: &str, reason: impl Into<String>) -> KpgError {
        KpgError::config(PathBuf::from(self.path), field, reason)
    }

    pub(crate) fn present(&self, key: &str) -> Option<&Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn req_usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?
            .ok_or_else(|| self.err(key, "required field is missing"))
    }

    pub(crate) fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => Ok(Some(n as usize)),
                _ => Err(self.err(key, format!("must be a positive integer, got {v}"))),
            },
        }
    }

    pub(crate) fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("must be a number, got {v}"))),
        }
    }

    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("must be true or false, got {v}"))),
        }
    }

    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<String>> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| self.err(key, format!("must be a string, got {v}"))),
        }
    }
}
