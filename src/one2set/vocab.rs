//! The generator's word vocabulary and its `tokenizer.json`.
//!
//! As jiacheng-ye/kg_one2set builds it (`preprocess.py`, `build_vocab`): the seven special tokens
//! `<pad> <unk> <bos> <eos> <sep> <peos> <null>` take ids 0..7, then every word of the sources and
//! target keyphrases by descending frequency (ties in order of first appearance, which is what
//! Python's stable sort over a `Counter` gives). Words are kpg's preprocessing tokens
//! ([`crate::preprocess`]), so `<digit>` is an ordinary, frequent word.
//!
//! The file is a Hugging Face `tokenizer.json` with a `WordLevel` model and a whitespace
//! pre-tokenizer, so that other tools can read it; kpg reads only its `model.vocab`. Ids must run
//! 0..n without gaps and begin with the seven special tokens in order. A vocabulary may hold more
//! words than the model's `vocab_size`: as in One2Set, words with an id at or past `vocab_size` are
//! out of the model's vocabulary (copied from the source, or `<unk>`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::error::{KpgError, Result};

/// The special tokens, in id order.
pub const SPECIAL_TOKENS: [&str; 7] = [
    "<pad>", "<unk>", "<bos>", "<eos>", "<sep>", "<peos>", "<null>",
];
pub const PAD_ID: u32 = 0;
pub const UNK_ID: u32 = 1;
pub const BOS_ID: u32 = 2;
pub const EOS_ID: u32 = 3;
pub const NULL_ID: u32 = 6;

/// Words by id, and ids by word.
#[derive(Debug, Clone)]
pub struct Vocab {
    words: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Vocab {
    /// The vocabulary with these words in id order; the special tokens must come first.
    pub fn from_words(words: Vec<String>) -> std::result::Result<Self, String> {
        for (id, special) in SPECIAL_TOKENS.iter().enumerate() {
            match words.get(id) {
                Some(w) if w == special => {}
                Some(w) => return Err(format!("id {id} is `{w}`, expected `{special}`")),
                None => return Err(format!("id {id} is missing, expected `{special}`")),
            }
        }
        let mut ids = HashMap::with_capacity(words.len());
        for (id, w) in words.iter().enumerate() {
            if ids.insert(w.clone(), id as u32).is_some() {
                return Err(format!("`{w}` appears twice"));
            }
        }
        Ok(Vocab { words, ids })
    }

    /// Reads the `model.vocab` of a WordLevel `tokenizer.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |reason: String| KpgError::Tokenizer {
            path: path.to_path_buf(),
            reason,
        };
        let json = crate::model::config::read_json(path)?;
        let model = json
            .get("model")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("no `model` object".into()))?;
        match model.get("type").and_then(Value::as_str) {
            Some("WordLevel") => {}
            other => {
                return Err(bad(format!(
                    "model type is {}, expected \"WordLevel\" (write one with `kpg vocab`)",
                    other.map_or("missing".to_string(), |t| format!("\"{t}\""))
                )))
            }
        }
        let vocab = model
            .get("vocab")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("`model.vocab` is missing or not an object".into()))?;
        let mut words: Vec<Option<String>> = vec![None; vocab.len()];
        for (word, id) in vocab {
            let id = id
                .as_u64()
                .filter(|&i| (i as usize) < words.len())
                .ok_or_else(|| {
                    bad(format!(
                        "`{word}` has id {id}; ids must run 0..{} without gaps",
                        words.len()
                    ))
                })? as usize;
            if words[id].replace(word.clone()).is_some() {
                return Err(bad(format!("id {id} is given to two words")));
            }
        }
        // Every slot is filled: n distinct ids below n.
        let words = words.into_iter().map(|w| w.unwrap_or_default()).collect();
        Vocab::from_words(words).map_err(bad)
    }

    /// The `tokenizer.json` document.
    pub fn to_tokenizer_json(&self) -> Value {
        let mut vocab = Map::with_capacity(self.words.len());
        for (id, w) in self.words.iter().enumerate() {
            vocab.insert(w.clone(), id.into());
        }
        let added: Vec<Value> = SPECIAL_TOKENS
            .iter()
            .enumerate()
            .map(|(id, t)| {
                json!({"id": id, "content": t, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": true})
            })
            .collect();
        json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": {"type": "WhitespaceSplit"},
            "post_processor": null,
            "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
        })
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string(&self.to_tokenizer_json()).expect("plain values");
        std::fs::write(path, text).map_err(|e| KpgError::io(path, e))
    }

    pub fn id(&self, word: &str) -> Option<u32> {
        self.ids.get(word).copied()
    }

    pub fn word(&self, id: u32) -> &str {
        &self.words[id as usize]
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

/// Word counts in order of first appearance, for [`VocabBuilder::build`].
#[derive(Debug, Default)]
pub struct VocabBuilder {
    counts: HashMap<String, (u64, usize)>, // word -> (count, first appearance)
}

impl VocabBuilder {
    pub fn add<S: AsRef<str>>(&mut self, tokens: &[S]) {
        for t in tokens {
            let t = t.as_ref();
            if let Some(entry) = self.counts.get_mut(t) {
                entry.0 += 1;
            } else {
                let order = self.counts.len();
                self.counts.insert(t.to_string(), (1, order));
            }
        }
    }

    /// Distinct words seen, special tokens included.
    pub fn distinct(&self) -> usize {
        self.counts.len()
    }

    /// The special tokens, then the most frequent words, `size` entries at most in all.
    pub fn build(&self, size: usize) -> Vocab {
        let mut ranked: Vec<(&String, u64, usize)> = self
            .counts
            .iter()
            .filter(|(w, _)| !SPECIAL_TOKENS.contains(&w.as_str()))
            .map(|(w, &(n, first))| (w, n, first))
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
        let words: Vec<String> = SPECIAL_TOKENS
            .iter()
            .map(|s| s.to_string())
            .chain(ranked.into_iter().map(|(w, _, _)| w.clone()))
            .take(size.max(SPECIAL_TOKENS.len()))
            .collect();
        Vocab::from_words(words).expect("special tokens first, words distinct")
    }
}

/// Where a generator's vocabulary lives in its directory.
pub fn tokenizer_path(dir: &Path) -> PathBuf {
    dir.join("tokenizer.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn specials_first_then_by_frequency_ties_by_first_appearance() {
        let mut b = VocabBuilder::default();
        b.add(&toks("b a <eos> c a <unk> d"));
        b.add(&toks("c a"));
        let v = b.build(100);
        let words: Vec<&str> = (0..v.len() as u32).map(|i| v.word(i)).collect();
        assert_eq!(
            words,
            ["<pad>", "<unk>", "<bos>", "<eos>", "<sep>", "<peos>", "<null>", "a", "c", "b", "d"]
        );
        assert_eq!(b.build(9).len(), 9);
        assert_eq!(b.build(3).len(), 7, "the special tokens are always there");
    }

    #[test]
    fn tokenizer_json_round_trips_and_loads_in_hf_tokenizers() {
        let mut b = VocabBuilder::default();
        b.add(&toks("deep keyphrase generation , <digit> ."));
        let v = b.build(50);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        v.write(&path).unwrap();
        let back = Vocab::load(&path).unwrap();
        assert_eq!(back.len(), v.len());
        assert_eq!(back.id("keyphrase"), v.id("keyphrase"));
        let hf = tokenizers::Tokenizer::from_file(&path).unwrap();
        let enc = hf
            .encode("deep keyphrase <null> unknownword", false)
            .unwrap();
        let want: Vec<u32> = vec![
            v.id("deep").unwrap(),
            v.id("keyphrase").unwrap(),
            NULL_ID,
            UNK_ID,
        ];
        assert_eq!(enc.get_ids(), want.as_slice());
    }

    #[test]
    fn bad_vocabularies_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        let write = |v: Value| std::fs::write(&path, v.to_string()).unwrap();
        write(json!({"model": {"type": "BPE", "vocab": {}}}));
        let e = Vocab::load(&path).unwrap_err().to_string();
        assert!(e.contains("WordLevel"), "{e}");
        write(json!({"model": {"type": "WordLevel", "vocab": {"<pad>": 0, "<unk>": 5}}}));
        let e = Vocab::load(&path).unwrap_err().to_string();
        assert!(e.contains("without gaps"), "{e}");
        write(json!({"model": {"type": "WordLevel", "vocab": {"<unk>": 0, "<pad>": 1}}}));
        let e = Vocab::load(&path).unwrap_err().to_string();
        assert!(e.contains("expected `<pad>`"), "{e}");
    }
}
