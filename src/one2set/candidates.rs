//! From decoded slots to a document's candidate keyphrases, as jiacheng-ye/kg_one2set's
//! post-processing does (`utils/string_helper.py`: `prediction_to_sentence` with `replace_unk`,
//! then `split_word_list_from_set`):
//!
//! - a slot is read up to its first `<eos>` or `<null>`; a slot that reaches `<null>` gives nothing,
//!   even after words, and one with no words before `<eos>` gives nothing;
//! - an id past the vocabulary is the copied source word it stands for; `<unk>` becomes the source
//!   word with the most head-0 cross-attention at that step; other special tokens stay as written;
//! - confidence = mean over the phrase's words (its `<eos>` excluded) of the token probabilities;
//! - then, beyond One2Set (whose evaluation removes duplicates later): a phrase with `<eos>` in
//!   it (copied through `<unk>` from the separator the source puts between title and abstract) is
//!   not a keyphrase; duplicate phrases of a document keep their highest confidence (the earlier
//!   slot on a tie);
//! - candidates are sorted by descending confidence, ties in slot order (a stable sort, as One2Set's
//!   `sorted`), and each is tagged present when its Porter-stemmed tokens occur contiguously in the
//!   stemmed source (the evaluation's rule, [`crate::eval::is_present`]).

use std::collections::HashMap;

use serde::Serialize;

use super::decode::SlotOutput;
use super::source::SourceIds;
use super::vocab::{Vocab, EOS_ID, NULL_ID, UNK_ID};
use crate::eval::{is_present, porter};
use crate::preprocess::EOS;

/// One candidate keyphrase of a document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub phrase: String,
    pub score: f64,
    /// The control code (0-based) that produced it.
    pub slot: usize,
    /// Whether its stemmed tokens occur in the stemmed source.
    pub present: bool,
}

/// The words and confidence of one slot, or `None` when it gives no phrase.
pub fn slot_phrase(
    slot: &SlotOutput,
    vocab: &Vocab,
    vocab_size: usize,
    source: &SourceIds,
) -> Option<(Vec<String>, f64)> {
    let mut words = Vec::new();
    let mut sum = 0f64;
    for (i, &t) in slot.tokens.iter().enumerate() {
        if t == NULL_ID {
            return None;
        }
        if t == EOS_ID {
            break;
        }
        let word = if (t as usize) >= vocab_size {
            source.oov[t as usize - vocab_size].clone()
        } else if t == UNK_ID {
            source.words[slot.attn_argmax[i] as usize].clone()
        } else {
            vocab.word(t).to_string()
        };
        words.push(word);
        sum += slot.probs[i] as f64;
    }
    if words.is_empty() {
        None
    } else {
        let n = words.len() as f64;
        Some((words, sum / n))
    }
}

/// Stems every token as the evaluation does (`stem(token.lower())`).
pub fn stem_all(tokens: &[String]) -> Vec<String> {
    tokens
        .iter()
        .map(|t| porter::stem(&t.to_lowercase()))
        .collect()
}

/// The document's candidates from its slots, deduplicated, sorted and tagged.
pub fn document_candidates(
    slots: &[SlotOutput],
    vocab: &Vocab,
    vocab_size: usize,
    source: &SourceIds,
    stemmed_source: &[String],
) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (code, slot) in slots.iter().enumerate() {
        let Some((words, score)) = slot_phrase(slot, vocab, vocab_size, source) else {
            continue;
        };
        if words.iter().any(|w| w == EOS) {
            continue;
        }
        let phrase = words.join(" ");
        if let Some(&i) = seen.get(&phrase) {
            if score > out[i].score {
                out[i].score = score;
                out[i].slot = code;
            }
            continue;
        }
        let present = is_present(stemmed_source, &stem_all(&words));
        seen.insert(phrase.clone(), out.len());
        out.push(Candidate {
            phrase,
            score,
            slot: code,
            present,
        });
    }
    // Stable: equal scores stay in slot order. A deduplicated candidate keeps its first slot's
    // place, so sort by (score desc, slot asc) to make ties follow the reported slot.
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.slot.cmp(&b.slot)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::one2set::vocab::SPECIAL_TOKENS;
    use crate::preprocess::source_tokens;

    #[test]
    fn a_control_token_copied_through_unk_is_not_a_keyphrase() {
        let mut words: Vec<String> = SPECIAL_TOKENS.iter().map(|s| s.to_string()).collect();
        words.extend(["graph", "neural", "."].map(String::from));
        let vocab = Vocab::from_words(words).unwrap();
        let tokens = source_tokens("graph neural", "networks");
        let source = SourceIds::new(&tokens, &vocab, vocab.len(), 64);
        let separator = tokens.iter().position(|t| t == "<eos>").unwrap() as u32;
        let graph = vocab.id("graph").unwrap();
        // Slot 0: `<unk>` attending to the title/abstract separator; slot 1: `graph <unk>` with the
        // <unk> attending to `networks` (an ordinary copy).
        let slots = [
            SlotOutput {
                tokens: vec![UNK_ID, EOS_ID],
                probs: vec![0.9, 0.9],
                attn_argmax: vec![separator, 0],
            },
            SlotOutput {
                tokens: vec![graph, UNK_ID, EOS_ID],
                probs: vec![0.5, 0.5, 0.5],
                attn_argmax: vec![0, separator + 1, 0],
            },
        ];
        let stems = stem_all(&tokens);
        let out = document_candidates(&slots, &vocab, vocab.len(), &source, &stems);
        let phrases: Vec<&str> = out.iter().map(|c| c.phrase.as_str()).collect();
        assert_eq!(phrases, ["graph networks"]);
    }
}
