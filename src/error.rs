//! The library's error type. Every variant names the file, tensor or field that is wrong, so that a
//! user with a bad model directory or a bad input learns what to fix without a backtrace.

use std::path::PathBuf;

/// Result with [`KpgError`].
pub type Result<T, E = KpgError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum KpgError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: file not found")]
    MissingFile { path: PathBuf },

    #[error("{path}: not valid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("{path}: field `{field}`: {reason}")]
    Config {
        path: PathBuf,
        field: String,
        reason: String,
    },

    #[error("{path}: not a valid safetensors file: {reason}")]
    SafeTensors { path: PathBuf, reason: String },

    #[error(
        "{path}: tensor `{name}` holds a non-finite value (NaN or infinity) at element {element}: \
         the weights are damaged"
    )]
    NonFiniteWeight {
        name: String,
        path: PathBuf,
        element: usize,
    },

    #[error("GGUF: {path}: {reason}")]
    Gguf { path: PathBuf, reason: String },

    #[error("{path}: tensor `{name}` is missing")]
    MissingTensor { name: String, path: PathBuf },

    #[error("{path}: tensor `{name}` has shape {got:?}, expected {expected:?}")]
    TensorShape {
        name: String,
        path: PathBuf,
        expected: Vec<usize>,
        got: Vec<usize>,
    },

    #[error(
        "{path}: tensor `{name}` has dtype {dtype}, which kpg does not support (f32, f16, bf16)"
    )]
    UnsupportedDtype {
        name: String,
        path: PathBuf,
        dtype: String,
    },

    #[error("{index}: shard `{shard}` named for tensor `{tensor}` does not exist")]
    MissingShard {
        index: PathBuf,
        shard: String,
        tensor: String,
    },

    #[error("{path}: tokenizer: {reason}")]
    Tokenizer { path: PathBuf, reason: String },

    #[error("{op}: shape mismatch: expected {expected}, got {got}")]
    Shape {
        op: &'static str,
        expected: String,
        got: String,
    },

    #[error("token id {id} is outside the vocabulary of {vocab_size}")]
    TokenOutOfRange { id: u32, vocab_size: usize },

    #[error("sequence of {needed} tokens does not fit: the model takes at most {limit} positions")]
    ContextTooLong { needed: usize, limit: usize },

    #[error(
        "KV cache is full: {needed} more blocks needed, {free} free of {total} (the cache is set \
         by --cache-tokens or --cache-mb)"
    )]
    CacheFull {
        needed: usize,
        free: usize,
        total: usize,
    },

    #[error("{0}")]
    InvalidArgument(String),

    /// A target-assignment problem that cannot be solved (`src/assign/`): `problem` is its index
    /// in the batch, `field` the input field at fault (`score`, `has_null`).
    #[error("assignment problem {problem}: field `{field}`: {reason}")]
    AssignInput {
        problem: usize,
        field: &'static str,
        reason: String,
    },

    /// A CUDA driver, cuBLAS or kernel-launch failure; `during` says what kpg was doing
    /// ("uploading tensor `model.layers.3.mlp.up_proj.weight`", "launching rmsnorm_bf16").
    #[error("CUDA error while {during}: {reason}")]
    Cuda { during: String, reason: String },

    /// `--device cuda` asked of a binary built without the `cuda` feature, or no usable GPU.
    #[error("CUDA is not available: {0}")]
    CudaUnavailable(String),

    /// The input could not be read to its end: a truncated or damaged `.gz`, an I/O error.
    #[error(
        "{path}: the input is truncated or damaged at {at}, after line {after_line}; \
         every record before that was processed: {source}"
    )]
    CorruptInput {
        path: String,
        at: String,
        after_line: usize,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}, line {line}: {reason}")]
    InputLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    #[error("{}", id_mismatch_message(.gold, .pred, .only_in_gold, .only_in_pred))]
    IdMismatch {
        gold: PathBuf,
        pred: PathBuf,
        only_in_gold: Vec<String>,
        only_in_pred: Vec<String>,
    },
}

/// "ids differ: 2 only in pred.jsonl (a, b); 1 only in gold.jsonl (c)", naming at most ten ids
/// a side so that a wholly wrong file still gives a one-line error.
fn id_mismatch_message(
    gold: &std::path::Path,
    pred: &std::path::Path,
    only_in_gold: &[String],
    only_in_pred: &[String],
) -> String {
    const SHOWN: usize = 10;
    let side = |ids: &[String], path: &std::path::Path| {
        let mut names: Vec<String> = ids.iter().take(SHOWN).map(|id| format!("`{id}`")).collect();
        if ids.len() > SHOWN {
            names.push(format!("and {} more", ids.len() - SHOWN));
        }
        format!(
            "{} only in {} ({})",
            ids.len(),
            path.display(),
            names.join(", ")
        )
    };
    let mut parts = Vec::new();
    if !only_in_pred.is_empty() {
        parts.push(side(only_in_pred, pred));
    }
    if !only_in_gold.is_empty() {
        parts.push(side(only_in_gold, gold));
    }
    format!("document ids differ: {}", parts.join("; "))
}

impl KpgError {
    /// Wraps an I/O error with the path it happened on; a missing file gets its own variant.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            KpgError::MissingFile { path }
        } else {
            KpgError::Io { path, source }
        }
    }

    pub fn config(path: impl Into<PathBuf>, field: &str, reason: impl Into<String>) -> Self {
        KpgError::Config {
            path: path.into(),
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}
