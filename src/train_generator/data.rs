//! Training examples for the generator, from corpora in the shared data format
//! (`{"id", "title", "abstract", "keyphrases"}`, .gz allowed), prepared the One2Set way
//! (jiacheng-ye/kg_one2set `preprocess.py`, `pykp/utils/io.py`; ../shared/DESIGN.md, "Training the
//! generator"):
//!
//! - the source is kpg's preprocessing (`title . <eos> abstract`, [`crate::preprocess`]), so that
//!   training sees exactly what `kpg generate` feeds the model; documents over
//!   [`MAX_TRAIN_SOURCE_TOKENS`] source tokens are dropped;
//! - keyphrases are tokenised the same way; empty ones and those over `max_keyphrase_len - 1` words
//!   are dropped (One2Set keeps room for `<eos>`);
//! - a keyphrase is present when its Porter-stemmed tokens occur in the stemmed source, as
//!   `kpg eval` decides it; present ones go to the first half of the control codes, absent ones to
//!   the second, each in the corpus's order (One2Set's `<peos>` split);
//! - target words get vocabulary ids, or the extended id of the source word they copy, or `<unk>`.
//!
//! A malformed record is skipped and counted, with its file and line in the first few warnings:
//! one bad line in 77,000 should not stop a training run.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{KpgError, Result};
use crate::one2set::candidates::stem_all;
use crate::one2set::source::SourceIds;
use crate::one2set::vocab::{Vocab, VocabBuilder, UNK_ID};
use crate::preprocess::{source_tokens, tokenize};
use crate::records::input_lines;

/// One2Set's training filter: longer sources are dropped, not cut.
pub const MAX_TRAIN_SOURCE_TOKENS: usize = 400;

/// A record as the shared data format writes it.
#[derive(Debug, Deserialize)]
struct Record {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    title: String,
    #[serde(default, rename = "abstract")]
    abstract_text: String,
    keyphrases: Vec<String>,
}

/// A record's text, tokenised.
#[derive(Debug, Clone)]
pub struct TokenizedRecord {
    pub id: String,
    pub source: Vec<String>,
    pub keyphrases: Vec<Vec<String>>,
}

/// One document ready for training.
#[derive(Debug, Clone)]
pub struct TrainExample {
    pub id: String,
    pub source: SourceIds,
    /// Present keyphrases as extended ids, at most `max_keyphrase_len - 1` each.
    pub present: Vec<Vec<u32>>,
    /// Absent keyphrases as extended ids.
    pub absent: Vec<Vec<u32>>,
}

/// What reading a corpus kept and dropped.
#[derive(Debug, Default, Clone)]
pub struct ReadStats {
    pub records: usize,
    pub malformed: usize,
    pub too_long: usize,
    pub no_keyphrase: usize,
    pub warnings: Vec<String>,
}

impl ReadStats {
    fn warn(&mut self, path: &Path, line: usize, reason: String) {
        self.malformed += 1;
        if self.warnings.len() < 5 {
            self.warnings
                .push(format!("{}, line {line}: {reason}", path.display()));
        }
    }

    pub fn kept(&self) -> usize {
        self.records - self.malformed - self.too_long - self.no_keyphrase
    }
}

/// Reads and tokenises every well-formed record of `paths`, skipping malformed ones (a line that
/// is not UTF-8 or not a record); an I/O error stops the read.
pub fn read_records(paths: &[PathBuf], stats: &mut ReadStats) -> Result<Vec<TokenizedRecord>> {
    let mut out = Vec::new();
    for path in paths {
        let lines = input_lines(Some(path))?;
        let read_failure = lines.failure();
        for (line, text) in lines {
            stats.records += 1;
            let text = match text {
                Ok(t) => t,
                Err(e @ KpgError::Io { .. }) => return Err(e),
                Err(e) => {
                    stats.warn(path, line, e.to_string());
                    continue;
                }
            };
            let record: Record = match serde_json::from_str(&text) {
                Ok(r) => r,
                Err(e) => {
                    stats.warn(path, line, format!("not a training record: {e}"));
                    continue;
                }
            };
            let id = match record.id {
                Some(serde_json::Value::String(s)) => s,
                Some(v) => v.to_string(),
                None => format!("{}:{line}", path.display()),
            };
            out.push(TokenizedRecord {
                id,
                source: source_tokens(&record.title, &record.abstract_text),
                keyphrases: record.keyphrases.iter().map(|k| tokenize(k)).collect(),
            });
        }
        read_failure.check()?;
    }
    Ok(out)
}

/// The vocabulary of `records` (source words and keyphrase words), `size` entries at most.
pub fn build_vocab(records: &[TokenizedRecord], size: usize) -> Vocab {
    let mut builder = VocabBuilder::default();
    for r in records {
        builder.add(&r.source);
        for k in &r.keyphrases {
            builder.add(k);
        }
    }
    builder.build(size)
}

/// Limits that decide what a training example may hold.
#[derive(Debug, Clone, Copy)]
pub struct ExampleLimits {
    pub vocab_size: usize,
    /// Tokens a slot decodes, `<eos>` included; keyphrases get one fewer word.
    pub max_keyphrase_len: usize,
    /// Documents with more source tokens are dropped.
    pub max_source_tokens: usize,
}

/// Turns a tokenised record into an example, or `None` when a filter drops it.
pub fn to_example(
    record: &TokenizedRecord,
    vocab: &Vocab,
    limits: ExampleLimits,
    stats: &mut ReadStats,
) -> Option<TrainExample> {
    if record.source.len() > limits.max_source_tokens || record.source.is_empty() {
        stats.too_long += 1;
        return None;
    }
    let source = SourceIds::new(&record.source, vocab, limits.vocab_size, usize::MAX);
    let stemmed_source = stem_all(&record.source);
    let (mut present, mut absent) = (Vec::new(), Vec::new());
    for phrase in &record.keyphrases {
        if phrase.is_empty() || phrase.len() > limits.max_keyphrase_len - 1 {
            continue;
        }
        let ids = phrase
            .iter()
            .map(|w| word_id(w, vocab, &source, limits.vocab_size))
            .collect();
        if crate::eval::is_present(&stemmed_source, &stem_all(phrase)) {
            present.push(ids);
        } else {
            absent.push(ids);
        }
    }
    if present.is_empty() && absent.is_empty() {
        stats.no_keyphrase += 1;
        return None;
    }
    Some(TrainExample {
        id: record.id.clone(),
        source,
        present,
        absent,
    })
}

/// A target word's id: in the model's vocabulary, else the source word it copies, else `<unk>`.
fn word_id(word: &str, vocab: &Vocab, source: &SourceIds, vocab_size: usize) -> u32 {
    if let Some(id) = vocab.id(word).filter(|&id| (id as usize) < vocab_size) {
        return id;
    }
    match source.oov.iter().position(|w| w == word) {
        Some(k) => (vocab_size + k) as u32,
        None => UNK_ID,
    }
}

/// Reads `paths` into examples for a model with these limits.
pub fn read_examples(
    paths: &[PathBuf],
    vocab: &Vocab,
    limits: ExampleLimits,
) -> Result<(Vec<TrainExample>, ReadStats)> {
    let mut stats = ReadStats::default();
    let records = read_records(paths, &mut stats)?;
    let examples = records
        .iter()
        .filter_map(|r| to_example(r, vocab, limits, &mut stats))
        .collect();
    Ok((examples, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(words: &[&str]) -> Vocab {
        let mut all: Vec<String> = crate::one2set::vocab::SPECIAL_TOKENS
            .iter()
            .map(|s| s.to_string())
            .collect();
        all.extend(words.iter().map(|s| s.to_string()));
        Vocab::from_words(all).unwrap()
    }

    fn record(source: &str, keyphrases: &[&str]) -> TokenizedRecord {
        TokenizedRecord {
            id: "d".into(),
            source: source.split(' ').map(str::to_string).collect(),
            keyphrases: keyphrases.iter().map(|k| tokenize(k)).collect(),
        }
    }

    #[test]
    fn keyphrases_split_by_stemmed_presence_and_words_map_to_copy_ids() {
        let v = vocab(&["neural", "network", "learning", "."]);
        let limits = ExampleLimits {
            vocab_size: v.len(),
            max_keyphrase_len: 6,
            max_source_tokens: 400,
        };
        let r = record(
            "neural networks . <eos> sinkhorn learning",
            &[
                "neural network",
                "sinkhorn",
                "deep learning",
                "a b c d e f",
                "",
            ],
        );
        let mut stats = ReadStats::default();
        let e = to_example(&r, &v, limits, &mut stats).unwrap();
        let n = v.len() as u32;
        // "neural network" is present after stemming; "sinkhorn" is copied from the source (the
        // first out-of-vocabulary word); "deep" is nowhere, so <unk>; six words are too many.
        assert_eq!(e.present, vec![vec![7, 8], vec![n + 1]]);
        assert_eq!(e.absent, vec![vec![UNK_ID, 9]]);
        assert_eq!(e.source.oov, ["networks", "sinkhorn"]);
    }

    #[test]
    fn long_sources_and_documents_without_keyphrases_are_dropped() {
        let v = vocab(&["a"]);
        let limits = ExampleLimits {
            vocab_size: v.len(),
            max_keyphrase_len: 6,
            max_source_tokens: 3,
        };
        let mut stats = ReadStats::default();
        assert!(to_example(&record("a a a a", &["a"]), &v, limits, &mut stats).is_none());
        assert!(to_example(&record("a a", &["a b c d e f g"]), &v, limits, &mut stats).is_none());
        assert_eq!((stats.too_long, stats.no_keyphrase), (1, 1));
    }
}
