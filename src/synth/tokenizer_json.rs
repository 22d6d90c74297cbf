//! Small, valid byte-level BPE `tokenizer.json` files for synthetic models: three special tokens,
//! the 256 byte symbols of GPT-2's byte-level alphabet, then merges (trained on a built-in text) or
//! unused filler entries up to the model's vocabulary size. Any text encodes, so synth models run
//! end to end.

use serde_json::Value;

pub const SPECIAL_TOKENS: [&str; 3] = ["<unk>", "<s>", "</s>"];
pub const BOS_ID: u32 = 1;
pub const EOS_ID: u32 = 2;

/// A byte-level BPE tokenizer trained on a small built-in English text (`corpus.txt`), so that
/// synthetic prompts have the token counts of real ones (about 1.3 tokens per word, not one per
/// byte); ids beyond what the text supports are unused filler. `vocab_size` must be at least 259.
pub fn trained_tokenizer(vocab_size: usize) -> Value {
    use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::{
        decoders::DecoderWrapper, normalizers::NormalizerWrapper,
        pre_tokenizers::PreTokenizerWrapper, processors::PostProcessorWrapper, AddedToken,
        TokenizerBuilder,
    };
    assert!(vocab_size >= SPECIAL_TOKENS.len() + 256);
    let mut trainer = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(vocab_size)
        .min_frequency(2)
        .special_tokens(
            SPECIAL_TOKENS
                .iter()
                .map(|t| AddedToken::from(*t, true))
                .collect(),
        )
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tok = TokenizerBuilder::<
        BPE,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(BPE::default())
    .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false).into()))
    .with_decoder(Some(ByteLevel::default().into()))
    .build()
    .expect("a complete tokenizer");
    let corpus = include_str!("corpus.txt").lines().map(str::to_string);
    tok.train(&mut trainer, corpus)
        .expect("training on the built-in text");
    let mut json: Value = serde_json::from_str(&tok.to_string(false).expect("serialisable"))
        .expect("tokenizers writes JSON");
    let vocab = json["model"]["vocab"].as_object_mut().expect("BPE vocab");
    for id in vocab.len()..vocab_size {
        vocab.insert(format!("<unused_{id}>"), id.into());
    }
    json
}
