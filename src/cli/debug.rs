//! `kpg debug logits` and `kpg debug generate`: the model seen from outside, as JSON, for golden
//! tests against transformers and for tools.

use serde_json::json;

use super::{print_line, GenerateArgs, LogitsArgs, ModelInput};
use crate::error::{KpgError, Result};
use crate::generate::{greedy_generate, teacher_forced_logits, RunOptions};
use crate::model::llama::Llama;

fn load(input: &ModelInput) -> Result<(Llama, Vec<u32>, RunOptions)> {
    if input.chunk == 0 || input.block_size == 0 {
        return Err(KpgError::InvalidArgument(
            "--chunk and --block-size must be at least 1".into(),
        ));
    }
    let model = Llama::load(&input.model)?;
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
    let out = greedy_generate(&model, &[ids], args.max_new_tokens, !args.ignore_eos, &opts)?;
    print_line(&json!({ "ids": out[0] }).to_string())?;
    Ok(0)
}
