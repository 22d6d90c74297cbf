//! The phrase table of a ranker directory (`phrases.tsv.gz`): for every stemmed candidate
//! ([`super::extract`]) of a training corpus, the number of documents it is a candidate of (its
//! document frequency, for TF-IDF) and the number of those in which it is an author keyphrase (its
//! *keyphraseness*, the strongest single feature of supervised extractors: Witten et al. 1999,
//! "KEA"; Medelyan & Witten 2006).
//!
//! Format: gzip-compressed text; a header line `#kpg-phrases\tdocs=N\tmax_words=W`, then
//! `key\tdf\tkeyphrase_docs` lines. Phrases seen in one document only and never a keyphrase are
//! left out (most of the corpus's n-grams, and their IDF is the table's largest anyway).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::extract::{extract, phrase_key, DocumentText};
use super::table_file::{TableReader, TableWriter};
use crate::error::Result;

/// File name of the table inside a ranker directory.
pub const PHRASES_FILE: &str = "phrases.tsv.gz";

/// Counts of one stemmed phrase over the training documents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhraseStats {
    /// Documents in which it is a candidate.
    pub df: u32,
    /// Of those, documents in which it is also a gold keyphrase.
    pub keyphrase_docs: u32,
}

/// Phrase statistics of a corpus.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhraseTable {
    pub docs: u64,
    pub max_words: usize,
    pub phrases: HashMap<String, PhraseStats>,
}

impl PhraseTable {
    pub fn get(&self, key: &str) -> PhraseStats {
        self.phrases.get(key).copied().unwrap_or_default()
    }

    /// Smoothed inverse document frequency, `ln((docs + 1) / (df + 1))`.
    pub fn idf(&self, key: &str) -> f64 {
        ((self.docs as f64 + 1.0) / (self.get(key).df as f64 + 1.0)).ln()
    }

    /// Adds one document: its candidates and its gold keyphrases.
    pub fn add_document(&mut self, doc: &DocumentText, gold: &[String]) {
        let gold: HashSet<String> = gold.iter().map(|g| phrase_key(g)).collect();
        self.docs += 1;
        for c in extract(doc, self.max_words) {
            let is_gold = gold.contains(&c.key);
            let s = self.phrases.entry(c.key).or_default();
            s.df += 1;
            s.keyphrase_docs += u32::from(is_gold);
        }
    }

    /// Drops phrases seen once and never a keyphrase.
    pub fn prune(&mut self) {
        self.phrases
            .retain(|_, s| s.df >= 2 || s.keyphrase_docs >= 1);
    }

    /// Writes the table, sorted by key so that the file is reproducible.
    pub fn save(&self, path: &Path) -> Result<()> {
        let header = [("docs", self.docs), ("max_words", self.max_words as u64)];
        let mut w = TableWriter::create(path, "phrases", &header)?;
        let mut keys: Vec<&String> = self.phrases.keys().collect();
        keys.sort();
        for k in keys {
            let s = self.phrases[k];
            w.line(&format!("{k}\t{}\t{}", s.df, s.keyphrase_docs))?;
        }
        w.finish()
    }

    pub fn load(path: &Path) -> Result<Self> {
        let mut r = TableReader::open(
            path,
            "phrases",
            "a kpg phrase table",
            &["docs", "max_words"],
        )?;
        let mut table = PhraseTable {
            docs: r.field("docs"),
            max_words: r.field("max_words") as usize,
            ..PhraseTable::default()
        };
        if table.docs == 0 || table.max_words == 0 {
            return Err(r.error("docs= and max_words= must be positive".into()));
        }
        while let Some(line) = r.next_line()? {
            let line = line.to_string();
            let mut parts = line.split('\t');
            let (Some(key), Some(df), Some(kp), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(r.error("expected `key<TAB>df<TAB>keyphrase_docs`".into()));
            };
            let number = |s: &str| {
                s.parse::<u32>()
                    .map_err(|_| r.error(format!("`{s}` is not a count")))
            };
            let stats = PhraseStats {
                df: number(df)?,
                keyphrase_docs: number(kp)?,
            };
            if stats.keyphrase_docs > stats.df {
                return Err(r.error("more keyphrase documents than documents".into()));
            }
            table.phrases.insert(key.to_string(), stats);
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_documents_and_keyphrase_documents() {
        let mut t = PhraseTable {
            max_words: 3,
            ..PhraseTable::default()
        };
        t.add_document(
            &DocumentText::new("Neural networks", "Neural networks learn."),
            &["neural network".into(), "deep learning".into()],
        );
        t.add_document(
            &DocumentText::new("Networks", "of neurons"),
            &["networks".into()],
        );
        assert_eq!(t.docs, 2);
        assert_eq!(
            t.get("neural network"),
            PhraseStats {
                df: 1,
                keyphrase_docs: 1
            }
        );
        assert_eq!(
            t.get("network"),
            PhraseStats {
                df: 2,
                keyphrase_docs: 1
            }
        );
        assert_eq!(
            t.get("deep learn"),
            PhraseStats::default(),
            "absent gold is not counted"
        );
        t.prune();
        assert!(t.phrases.contains_key("neural network") && !t.phrases.contains_key("learn"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PHRASES_FILE);
        t.save(&path).unwrap();
        assert_eq!(PhraseTable::load(&path).unwrap(), t);
        assert!((t.idf("network") - (3.0f64 / 3.0).ln()).abs() < 1e-12);
    }

    #[test]
    fn bad_tables_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.tsv");
        for (text, needle) in [
            ("hello\n", "no `#kpg-phrases` header"),
            ("#kpg-phrases\tdocs=x\n", "not name=number"),
            ("#kpg-phrases\tdocs=3\n", "lacks max_words="),
            ("#kpg-phrases\tdocs=3\tmax_words=3\na\t1\n", "expected `key"),
            (
                "#kpg-phrases\tdocs=3\tmax_words=3\na\t1\t2\n",
                "more keyphrase documents",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = PhraseTable::load(&path).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains("t.tsv"), "{e}");
        }
    }
}
