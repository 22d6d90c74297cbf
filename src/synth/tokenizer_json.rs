//! A small, valid byte-level BPE `tokenizer.json` for synthetic models: three special tokens, the
//! 256 byte symbols of GPT-2's byte-level alphabet, then unused filler entries up to the model's
//! vocabulary size. Any text encodes (one token per byte), so synth models run end to end.

use serde_json::{json, Map, Value};

pub const SPECIAL_TOKENS: [&str; 3] = ["<unk>", "<s>", "</s>"];
pub const BOS_ID: u32 = 1;
pub const EOS_ID: u32 = 2;

/// GPT-2's map from bytes to printable characters (`bytes_to_unicode`).
fn byte_symbols() -> Vec<char> {
    let printable = |b: u32| {
        (b'!' as u32..=b'~' as u32).contains(&b)
            || (0xA1..=0xAC).contains(&b)
            || (0xAE..=0xFF).contains(&b)
    };
    let mut next = 256u32;
    (0..256u32)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap()
            } else {
                let c = char::from_u32(next).unwrap();
                next += 1;
                c
            }
        })
        .collect()
}

/// The tokenizer as JSON; `vocab_size` must be at least 259.
pub fn byte_level_tokenizer(vocab_size: usize) -> Value {
    assert!(vocab_size >= SPECIAL_TOKENS.len() + 256);
    let mut vocab = Map::new();
    let mut added = Vec::new();
    for (id, tok) in SPECIAL_TOKENS.iter().enumerate() {
        vocab.insert(tok.to_string(), id.into());
        added.push(
            json!({"id": id, "content": tok, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true}),
        );
    }
    for (i, c) in byte_symbols().into_iter().enumerate() {
        vocab.insert(c.to_string(), (SPECIAL_TOKENS.len() + i).into());
    }
    for id in SPECIAL_TOKENS.len() + 256..vocab_size {
        vocab.insert(format!("<unused_{id}>"), id.into());
    }
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
        "use_regex": true});
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": null,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
            "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": []}
    })
}
