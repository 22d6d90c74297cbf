//! A GGUF file's tokenizer, rebuilt from its metadata as the `tokenizer.json` transformers would
//! write for it, and loaded with the tokenizers crate:
//!
//! - byte-level BPE (`tokenizer.ggml.model` = `gpt2`): the vocabulary, merges and special tokens
//!   of the file, and the pre-tokenizer that `tokenizer.ggml.pre` names (`smollm` splits every
//!   digit on its own);
//! - SentencePiece (`llama`: LLaMA 1/2, Mistral, TinyLlama): BPE over "▁"-marked pieces with byte
//!   fallback, its merges derived from the pieces' scores as transformers' converter does
//!   (`SentencePieceExtractor`: every split of a piece into two pieces, ranked by the piece's
//!   score), which reproduces llama.cpp's highest-score-first merging.

use serde_json::{json, Value as Json};

use super::header::Value;
use super::GgufFile;
use crate::error::{KpgError, Result};
use crate::tokenizer::Tokenizer;

/// `token_type` of a control token (BOS, EOS, chat markers): an added, special token.
const CONTROL: u64 = 3;
/// `token_type` of a user-defined token: added, not special.
const USER_DEFINED: u64 = 4;

/// The byte-level pre-tokenizer without its own regex, after a split.
fn byte_level(use_regex: bool) -> Json {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
           "use_regex": use_regex})
}

/// The pre-tokenizer llama.cpp's `tokenizer.ggml.pre` stands for, as transformers writes it.
fn pre_tokenizer(pre: &str) -> Option<Json> {
    Some(match pre {
        "default" | "gpt2" | "gpt-2" => byte_level(true),
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        "llama-bpe" | "llama3" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex":
                "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
             "behavior": "Isolated", "invert": false},
            byte_level(false)]}),
        _ => return None,
    })
}

fn strings<'a>(file: &'a GgufFile, key: &str) -> Result<Option<Vec<&'a str>>> {
    match file.header.get(key) {
        None => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str())
            .collect::<Option<Vec<&str>>>()
            .map(Some)
            .ok_or_else(|| err(file, format!("`{key}` is not a list of strings"))),
        Some(v) => Err(err(
            file,
            format!("`{key}` is a {}, not a list", v.type_name()),
        )),
    }
}

fn err(file: &GgufFile, reason: String) -> KpgError {
    KpgError::Gguf {
        path: file.path.clone(),
        reason,
    }
}

/// Token text to id.
fn vocab_map(tokens: &[&str]) -> serde_json::Map<String, Json> {
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), json!(i)))
        .collect()
}

/// `tokenizer.ggml.token_type` of each token (normal when absent).
fn token_types(file: &GgufFile) -> Vec<u64> {
    match file.header.get("tokenizer.ggml.token_type") {
        Some(Value::Array(items)) => items.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
        _ => Vec::new(),
    }
}

/// The added tokens of a vocabulary: control tokens (special) and user-defined ones.
fn added_tokens(tokens: &[&str], types: &[u64]) -> Vec<Json> {
    tokens
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let kind = types.get(i).copied().unwrap_or(1);
            (kind == CONTROL || kind == USER_DEFINED).then(|| {
                json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false, "special": kind == CONTROL})
            })
        })
        .collect()
}

/// `<bos> $A` (and `<eos>` after when asked): the post-processor of a tokenizer that adds them.
fn template_processing(file: &GgufFile, tokens: &[&str], add_bos: bool, add_eos: bool) -> Json {
    let h = &file.header;
    let id = |key: &str| h.get(key).and_then(Value::as_u64).map(|i| i as usize);
    let named = |key: &str| id(key).and_then(|i| tokens.get(i).map(|t| (i, t.to_string())));
    let mut single = Vec::new();
    let mut specials = serde_json::Map::new();
    let bos = named("tokenizer.ggml.bos_token_id").filter(|_| add_bos);
    let eos = named("tokenizer.ggml.eos_token_id").filter(|_| add_eos);
    if let Some((i, t)) = &bos {
        single.push(json!({"SpecialToken": {"id": t, "type_id": 0}}));
        specials.insert(t.clone(), json!({"id": t, "ids": [i], "tokens": [t]}));
    }
    single.push(json!({"Sequence": {"id": "A", "type_id": 0}}));
    if let Some((i, t)) = &eos {
        single.push(json!({"SpecialToken": {"id": t, "type_id": 0}}));
        specials.insert(t.clone(), json!({"id": t, "ids": [i], "tokens": [t]}));
    }
    let mut pair = single.clone();
    pair.push(json!({"Sequence": {"id": "B", "type_id": 1}}));
    json!({"type": "TemplateProcessing", "single": single, "pair": pair,
           "special_tokens": specials})
}

/// A SentencePiece vocabulary as transformers' `LlamaTokenizerFast` writes it.
fn sentencepiece(file: &GgufFile, tokens: &[&str]) -> Result<Tokenizer> {
    let h = &file.header;
    let scores: Vec<f64> = match h.get("tokenizer.ggml.scores") {
        Some(Value::Array(items)) => items.iter().map(|v| v.as_f64().unwrap_or(0.0)).collect(),
        _ => {
            return Err(err(
                file,
                "a SentencePiece tokenizer needs `tokenizer.ggml.scores`".into(),
            ))
        }
    };
    if scores.len() != tokens.len() {
        return Err(err(
            file,
            format!("{} tokens but {} scores", tokens.len(), scores.len()),
        ));
    }
    let types = token_types(file);
    let ids: std::collections::HashMap<&str, usize> =
        tokens.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    // Pieces by descending score (ties by id); each piece's splits into two pieces, by the ids
    // of their halves; all of it stable-sorted by the piece's score.
    let mut order: Vec<usize> = (0..tokens.len())
        .filter(|&i| types.get(i).copied().unwrap_or(1) == 1)
        .collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut merges: Vec<(f64, [&str; 2])> = Vec::new();
    for &i in &order {
        let piece = tokens[i];
        let mut local: Vec<(usize, usize, [&str; 2])> = piece
            .char_indices()
            .skip(1)
            .filter_map(|(at, _)| {
                let (l, r) = piece.split_at(at);
                Some((*ids.get(l)?, *ids.get(r)?, [l, r]))
            })
            .collect();
        local.sort_by_key(|&(l, r, _)| (l, r));
        merges.extend(local.into_iter().map(|(_, _, m)| (scores[i], m)));
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0));
    let vocab = vocab_map(tokens);
    let flag = |key: &str, default: bool| match h.get(key) {
        Some(Value::Bool(b)) => *b,
        _ => default,
    };
    let unk = h
        .get("tokenizer.ggml.unknown_token_id")
        .and_then(Value::as_u64)
        .and_then(|i| tokens.get(i as usize))
        .map(|t| t.to_string());
    let replace = json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"});
    let normalizer = if flag("tokenizer.ggml.add_space_prefix", true) {
        json!({"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u{2581}"}, replace]})
    } else {
        replace
    };
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens(tokens, &types),
        "normalizer": normalizer,
        "pre_tokenizer": null,
        "post_processor": template_processing(
            file,
            tokens,
            flag("tokenizer.ggml.add_bos_token", true),
            flag("tokenizer.ggml.add_eos_token", false),
        ),
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": null, "unk_token": unk,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                  "vocab": vocab,
                  "merges": merges.iter().map(|(_, m)| json!(m)).collect::<Vec<_>>()},
    });
    Tokenizer::from_json(&tokenizer.to_string(), &file.path)
}

/// `tokenizer.chat_template`, with the BOS and EOS tokens' text; None without a template.
pub fn chat_template(file: &GgufFile) -> Option<crate::select::chat::ChatTemplate> {
    let h = &file.header;
    let source = h.get("tokenizer.chat_template")?.as_str()?.to_string();
    let tokens = match h.get("tokenizer.ggml.tokens") {
        Some(Value::Array(items)) => items,
        _ => return None,
    };
    let text = |key: &str| {
        h.get(key)
            .and_then(Value::as_u64)
            .and_then(|i| tokens.get(i as usize))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Some(crate::select::chat::ChatTemplate {
        source,
        bos_token: text("tokenizer.ggml.bos_token_id"),
        eos_token: text("tokenizer.ggml.eos_token_id"),
    })
}

/// The file's tokenizer; None when it has none (`tokenizer.ggml.tokens` absent).
pub fn build(file: &GgufFile) -> Result<Option<Tokenizer>> {
    let h = &file.header;
    let Some(tokens) = strings(file, "tokenizer.ggml.tokens")? else {
        return Ok(None);
    };
    let model = h
        .get("tokenizer.ggml.model")
        .and_then(Value::as_str)
        .unwrap_or("gpt2");
    if model == "llama" {
        return sentencepiece(file, &tokens).map(Some);
    }
    if model != "gpt2" {
        return Err(err(
            file,
            format!(
                "tokenizer `{model}` is not supported (gpt2, byte-level BPE, and llama, \
                 SentencePiece, are)"
            ),
        ));
    }
    let pre_name = h
        .get("tokenizer.ggml.pre")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let pre = pre_tokenizer(pre_name).ok_or_else(|| {
        err(
            file,
            format!(
                "pre-tokenizer `{pre_name}` is not supported (default, gpt2, smollm, llama-bpe)"
            ),
        )
    })?;
    let merges = strings(file, "tokenizer.ggml.merges")?.unwrap_or_default();
    let types = token_types(file);
    let vocab = vocab_map(&tokens);
    let add_bos = matches!(
        h.get("tokenizer.ggml.add_bos_token"),
        Some(Value::Bool(true))
    );
    let add_eos = matches!(
        h.get("tokenizer.ggml.add_eos_token"),
        Some(Value::Bool(true))
    );
    let post_processor = if add_bos || add_eos {
        template_processing(file, &tokens, add_bos, add_eos)
    } else {
        json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false,
               "use_regex": true})
    };
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens(&tokens, &types),
        "normalizer": null,
        "pre_tokenizer": pre,
        "post_processor": post_processor,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                    "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges},
    });
    Tokenizer::from_json(&tokenizer.to_string(), &file.path).map(Some)
}
