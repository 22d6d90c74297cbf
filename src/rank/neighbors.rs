//! Absent candidates by retrieval: the author keyphrases of the training documents most similar to
//! a document, voted by similarity (the retrieval half of Chen et al. 2019, "An Integrated
//! Approach for Keyphrase Generation via Exploring the Power of Retrieval and Extraction"). Many
//! absent keyphrases are the concepts a field names its papers by ("wireless sensor networks",
//! "performance"), and similar papers carry them.
//!
//! Similarity is the cosine of TF-IDF vectors over stemmed content words (sublinear tf, `1 + ln
//! tf`; the phrase table's IDF). A training document keeps its `terms_per_doc` heaviest terms,
//! weights quantised to 1/255, which bounds the index to a few bytes a document; a query keeps all
//! of its terms.
//!
//! `neighbors.tsv.gz`, gzip-compressed text: a header `#kpg-neighbors\tdocs=N\tterms=T\t
//! keyphrases=P`, then T lines `stem`, then P lines `phrase`, then N lines
//! `kp,kp,...\tterm:q term:q ...` (indices into the two lists; weight = q / 255).

use std::collections::HashMap;
use std::path::Path;

use super::extract::{is_candidate_word, phrase_key, DocumentText};
use super::table_file::{TableReader, TableWriter};
use super::tables::PhraseTable;
use crate::error::Result;
use crate::preprocess::{tokenize, DIGIT};

/// File name of the index inside a ranker directory.
pub const NEIGHBORS_FILE: &str = "neighbors.tsv.gz";
/// Terms a training document keeps.
pub const TERMS_PER_DOC: usize = 32;
/// Neighbours whose keyphrases are voted on.
pub const NEIGHBORS: usize = 20;
/// Retrieved phrases a document's pool takes, the best voted first.
pub const RETRIEVED: usize = 15;

/// A document's TF-IDF vector: (term stem, weight), L2-normalised.
fn tfidf_vector(doc: &DocumentText, table: &PhraseTable) -> Vec<(String, f64)> {
    let mut tf: HashMap<&str, usize> = HashMap::new();
    for (t, s) in doc.tokens.iter().zip(&doc.stems) {
        if t != DIGIT && is_candidate_word(t) {
            *tf.entry(s.as_str()).or_default() += 1;
        }
    }
    let mut v: Vec<(String, f64)> = tf
        .into_iter()
        .map(|(s, n)| (s.to_string(), (1.0 + (n as f64).ln()) * table.idf(s)))
        .collect();
    // Heaviest first, ties by stem: the kept terms and the norm's summation order must not
    // depend on hashing, or two runs would differ in the last bits.
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let norm = v.iter().map(|(_, w)| w * w).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|(_, w)| *w /= norm);
    }
    v
}

/// The index, as built or loaded.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct NeighborIndex {
    terms: Vec<String>,
    term_ids: HashMap<String, u32>,
    keyphrases: Vec<String>,
    /// [`phrase_key`] of each keyphrase, computed once rather than at every query.
    keyphrase_keys: Vec<String>,
    keyphrase_ids: HashMap<String, u32>,
    doc_keyphrases: Vec<Vec<u32>>,  // [docs]
    doc_terms: Vec<Vec<(u32, u8)>>, // [docs] as stored
    postings: Vec<Vec<(u32, f32)>>, // [terms] (doc, weight)
}

/// A phrase that similar documents have as a keyphrase.
#[derive(Debug, Clone, PartialEq)]
pub struct Retrieved {
    /// As the training documents write it, in kpg's tokens.
    pub phrase: String,
    /// Stemmed key ([`phrase_key`]).
    pub key: String,
    /// Sum of the similarities of the neighbours that have it.
    pub score: f64,
    /// How many of the neighbours have it.
    pub docs: usize,
}

impl NeighborIndex {
    pub fn docs(&self) -> usize {
        self.doc_keyphrases.len()
    }

    /// Adds a training document and its gold keyphrases.
    pub fn add_document(&mut self, doc: &DocumentText, gold: &[String], table: &PhraseTable) {
        let mut kps = Vec::new();
        for g in gold {
            let phrase = tokenize(g).join(" ");
            if phrase.is_empty() {
                continue;
            }
            let next = self.keyphrases.len() as u32;
            let id = *self.keyphrase_ids.entry(phrase.clone()).or_insert_with(|| {
                self.keyphrase_keys.push(phrase_key(&phrase));
                self.keyphrases.push(phrase);
                next
            });
            if !kps.contains(&id) {
                kps.push(id);
            }
        }
        let mut terms = Vec::new();
        for (stem, w) in tfidf_vector(doc, table).into_iter().take(TERMS_PER_DOC) {
            let q = (w * 255.0).round().clamp(1.0, 255.0) as u8;
            let next = self.terms.len() as u32;
            let id = *self.term_ids.entry(stem.clone()).or_insert_with(|| {
                self.terms.push(stem);
                next
            });
            terms.push((id, q));
        }
        self.push_doc(kps, terms);
    }

    fn push_doc(&mut self, kps: Vec<u32>, terms: Vec<(u32, u8)>) {
        let doc = self.doc_keyphrases.len() as u32;
        if self.postings.len() < self.terms.len() {
            self.postings.resize(self.terms.len(), Vec::new());
        }
        for &(t, q) in &terms {
            self.postings[t as usize].push((doc, f32::from(q) / 255.0));
        }
        self.doc_keyphrases.push(kps);
        self.doc_terms.push(terms);
    }

    /// The `k` most similar training documents with their cosine similarity, most similar first
    /// (ties by index).
    pub fn neighbors(
        &self,
        doc: &DocumentText,
        table: &PhraseTable,
        k: usize,
    ) -> Vec<(usize, f64)> {
        // A dense accumulator: a few hundred KB, far cheaper than hashing every posting.
        let mut score = vec![0f64; self.docs()];
        let mut touched = Vec::new();
        for (stem, w) in tfidf_vector(doc, table) {
            // A zero weight would leave a touched score at 0 and list its document twice.
            if w <= 0.0 {
                continue;
            }
            if let Some(&t) = self.term_ids.get(&stem) {
                for &(d, dw) in &self.postings[t as usize] {
                    let s = &mut score[d as usize];
                    if *s == 0.0 {
                        touched.push(d as usize);
                    }
                    *s += w * f64::from(dw);
                }
            }
        }
        let mut all: Vec<(usize, f64)> = touched.into_iter().map(|d| (d, score[d])).collect();
        let order = |a: &(usize, f64), b: &(usize, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        // Most documents share a term with the query: select the top k before sorting them.
        if all.len() > k && k > 0 {
            all.select_nth_unstable_by(k - 1, order);
        }
        all.truncate(k);
        all.sort_by(order);
        all
    }

    /// The keyphrases of the [`NEIGHBORS`] nearest training documents, voted by similarity, the
    /// best [`RETRIEVED`] first (ties by key).
    pub fn retrieve(&self, doc: &DocumentText, table: &PhraseTable) -> Vec<Retrieved> {
        let mut votes: HashMap<String, Retrieved> = HashMap::new();
        for (d, sim) in self.neighbors(doc, table, NEIGHBORS) {
            for &kp in &self.doc_keyphrases[d] {
                let key = &self.keyphrase_keys[kp as usize];
                let r = votes.entry(key.clone()).or_insert_with(|| Retrieved {
                    phrase: self.keyphrases[kp as usize].clone(),
                    key: key.clone(),
                    score: 0.0,
                    docs: 0,
                });
                r.score += sim;
                r.docs += 1;
            }
        }
        let mut out: Vec<Retrieved> = votes.into_values().collect();
        out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.key.cmp(&b.key)));
        out.truncate(RETRIEVED);
        out
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let header = [
            ("docs", self.docs() as u64),
            ("terms", self.terms.len() as u64),
            ("keyphrases", self.keyphrases.len() as u64),
        ];
        let mut w = TableWriter::create(path, "neighbors", &header)?;
        for line in self.terms.iter().chain(&self.keyphrases) {
            w.line(line)?;
        }
        for (kps, terms) in self.doc_keyphrases.iter().zip(&self.doc_terms) {
            let kps: Vec<String> = kps.iter().map(u32::to_string).collect();
            let terms: Vec<String> = terms.iter().map(|(t, q)| format!("{t}:{q}")).collect();
            w.line(&format!("{}\t{}", kps.join(","), terms.join(" ")))?;
        }
        w.finish()
    }

    pub fn load(path: &Path) -> Result<Self> {
        let mut r = TableReader::open(
            path,
            "neighbors",
            "a kpg neighbour index",
            &["docs", "terms", "keyphrases"],
        )?;
        let (docs, terms, kps) = (r.field("docs"), r.field("terms"), r.field("keyphrases"));
        let mut index = NeighborIndex::default();
        (index.terms, index.term_ids) = read_list(&mut r, terms)?;
        (index.keyphrases, index.keyphrase_ids) = read_list(&mut r, kps)?;
        index.keyphrase_keys = index.keyphrases.iter().map(|k| phrase_key(k)).collect();
        for _ in 0..docs {
            let line = r.required_line()?.to_string();
            let (k, t) = line
                .split_once('\t')
                .ok_or_else(|| r.error("expected `keyphrases<TAB>terms`".into()))?;
            let id = |s: &str, limit: u64, what: &str| -> Result<u32> {
                s.parse::<u32>()
                    .ok()
                    .filter(|&i| u64::from(i) < limit)
                    .ok_or_else(|| r.error(format!("`{s}` is not a {what} index")))
            };
            let doc_kps = k
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| id(s, kps, "keyphrase"))
                .collect::<Result<Vec<_>>>()?;
            let doc_terms = t
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(|p| {
                    let (t, q) = p
                        .split_once(':')
                        .ok_or_else(|| r.error(format!("`{p}` is not term:weight")))?;
                    let q = q
                        .parse::<u8>()
                        .map_err(|_| r.error(format!("`{q}` is not a weight of 0..255")))?;
                    Ok((id(t, terms, "term")?, q))
                })
                .collect::<Result<Vec<_>>>()?;
            index.push_doc(doc_kps, doc_terms);
        }
        Ok(index)
    }
}

/// `n` lines of a table, and the index of each.
fn read_list(r: &mut TableReader, n: u64) -> Result<(Vec<String>, HashMap<String, u32>)> {
    let mut list = Vec::new();
    let mut ids = HashMap::new();
    for _ in 0..n {
        let line = r.required_line()?.to_string();
        ids.insert(line.clone(), list.len() as u32);
        list.push(line);
    }
    Ok((list, ids))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::tables::PhraseStats;

    #[test]
    fn nearest_documents_vote_their_keyphrases() {
        let mut table = PhraseTable {
            docs: 100,
            max_words: 3,
            ..PhraseTable::default()
        };
        for w in ["sensor", "network", "energi", "rout", "imag", "segment"] {
            table.phrases.insert(
                w.into(),
                PhraseStats {
                    df: 10,
                    keyphrase_docs: 0,
                },
            );
        }
        let mut index = NeighborIndex::default();
        let train = [
            (
                "Sensor networks",
                "Energy in sensor networks.",
                vec!["wireless sensor networks", "energy"],
            ),
            (
                "Routing",
                "Routing in sensor networks.",
                vec!["Wireless Sensor Networks", "routing"],
            ),
            ("Images", "Image segmentation.", vec!["computer vision"]),
        ];
        for (t, a, kps) in &train {
            let kps: Vec<String> = kps.iter().map(|s| s.to_string()).collect();
            index.add_document(&DocumentText::new(t, a), &kps, &table);
        }
        let query = DocumentText::new("Energy-aware routing", "for sensor networks");
        let n = index.neighbors(&query, &table, 2);
        assert_eq!(n.iter().map(|x| x.0).collect::<Vec<_>>().len(), 2);
        assert!(
            n.iter().all(|x| x.0 != 2),
            "the image paper is not a neighbour: {n:?}"
        );
        let r = index.retrieve(&query, &table);
        assert_eq!(r[0].phrase, "wireless sensor networks");
        assert_eq!(r[0].docs, 2, "both spellings are one keyphrase");
        assert!(r.iter().all(|x| x.key != "comput vision"), "{r:?}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(NEIGHBORS_FILE);
        index.save(&path).unwrap();
        let loaded = NeighborIndex::load(&path).unwrap();
        assert_eq!(loaded.retrieve(&query, &table), r);
        assert_eq!(loaded.docs(), 3);
    }

    #[test]
    fn a_truncated_index_is_a_named_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(NEIGHBORS_FILE);
        std::fs::write(
            &path,
            "#kpg-neighbors\tdocs=2\tterms=1\tkeyphrases=1\nx\ny\n0\t0:9\n",
        )
        .unwrap();
        let e = NeighborIndex::load(&path).unwrap_err().to_string();
        assert!(e.contains("truncated") && e.contains(NEIGHBORS_FILE), "{e}");
        std::fs::write(
            &path,
            "#kpg-neighbors\tdocs=1\tterms=1\tkeyphrases=1\nx\ny\n0\t3:9\n",
        )
        .unwrap();
        let e = NeighborIndex::load(&path).unwrap_err().to_string();
        assert!(e.contains("not a term index"), "{e}");
    }
}
