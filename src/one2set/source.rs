//! A document's source as the generator reads it: kpg's preprocessing tokens
//! ([`crate::preprocess::source_tokens`]: title ` . <eos> ` abstract), cut to the model's
//! `max_source_len`, as vocabulary ids and as ids of the extended vocabulary that the copy mechanism
//! writes into.
//!
//! As jiacheng-ye/kg_one2set does it (`pykp/utils/io.py`, `build_dataset` and `extend_vocab_OOV`):
//! a word with an id below `vocab_size` keeps it; any other word is `<unk>` for the encoder and,
//! for copying, gets the id `vocab_size + k`, k counting the document's distinct out-of-vocabulary
//! words in order of first appearance. (One2Set also caps k at `max_unk_words`, 1000 by default,
//! which no source of `max_source_len` tokens reaches in practice; kpg has no such cap.)
//!
//! One2Set does not cut test sources; kpg cuts at `max_source_len` so that memory and time per
//! document are bounded. Words past the cut are neither encoded nor copyable, but presence is
//! still decided against the whole source.

use std::collections::HashMap;

use super::vocab::{Vocab, UNK_ID};

/// One document's source, ready for the encoder and the copy mechanism.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceIds {
    /// The source words, cut to `max_source_len`: `<unk>` replacement copies from these.
    pub words: Vec<String>, // [len]
    /// Vocabulary ids for the encoder (out-of-vocabulary words as `<unk>`).
    pub ids: Vec<u32>, // [len]
    /// Extended-vocabulary ids (out-of-vocabulary words as `vocab_size + k`).
    pub ext_ids: Vec<u32>, // [len]
    /// The out-of-vocabulary words: extended id `vocab_size + k` is `oov[k]`.
    pub oov: Vec<String>,
    /// The distinct extended ids of the source, in order of first appearance.
    pub distinct: Vec<u32>,
    /// For every source position, the index of its extended id in `distinct`.
    pub distinct_at: Vec<u32>, // [len]
}

impl SourceIds {
    pub fn new(tokens: &[String], vocab: &Vocab, vocab_size: usize, max_len: usize) -> Self {
        let words: Vec<String> = tokens.iter().take(max_len).cloned().collect();
        let mut oov_ids: HashMap<&str, u32> = HashMap::new();
        let mut oov = Vec::new();
        let mut ids = Vec::with_capacity(words.len());
        let mut ext_ids = Vec::with_capacity(words.len());
        for w in &words {
            match vocab.id(w).filter(|&id| (id as usize) < vocab_size) {
                Some(id) => {
                    ids.push(id);
                    ext_ids.push(id);
                }
                None => {
                    let next = (vocab_size + oov.len()) as u32;
                    let id = *oov_ids.entry(w.as_str()).or_insert_with(|| {
                        oov.push(w.clone());
                        next
                    });
                    ids.push(UNK_ID);
                    ext_ids.push(id);
                }
            }
        }
        let mut index: HashMap<u32, u32> = HashMap::new();
        let mut distinct = Vec::new();
        let distinct_at = ext_ids
            .iter()
            .map(|&e| {
                *index.entry(e).or_insert_with(|| {
                    distinct.push(e);
                    (distinct.len() - 1) as u32
                })
            })
            .collect();
        SourceIds {
            words,
            ids,
            ext_ids,
            oov,
            distinct,
            distinct_at,
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oov_words_get_extended_ids_in_order_of_first_appearance() {
        let words: Vec<String> = [
            "<pad>", "<unk>", "<bos>", "<eos>", "<sep>", "<peos>", "<null>",
        ]
        .iter()
        .chain(["a", "b", "rare"].iter())
        .map(|s| s.to_string())
        .collect();
        let vocab = Vocab::from_words(words).unwrap();
        // vocab_size 9: `rare` (id 9) is outside the model's vocabulary.
        let toks: Vec<String> = "x a rare y x <unk> b tail"
            .split(' ')
            .map(str::to_string)
            .collect();
        let s = SourceIds::new(&toks, &vocab, 9, 7);
        assert_eq!(s.words.len(), 7);
        assert_eq!(s.ids, [1, 7, 1, 1, 1, 1, 8]);
        assert_eq!(s.ext_ids, [9, 7, 10, 11, 9, 1, 8]);
        assert_eq!(s.oov, ["x", "rare", "y"]);
        assert_eq!(s.distinct, [9, 7, 10, 11, 1, 8]);
        assert_eq!(s.distinct_at, [0, 1, 2, 3, 0, 4, 5]);
    }
}
