//! One document's candidate pool: the extractor's candidates, the generator's and the keyphrases of
//! similar training documents ([`super::neighbors`]), merged by stemmed form
//! ([`super::extract::phrase_key`]), each marked with where it came from and described by the
//! features the ranker reads ([`super::features`]).

use std::collections::HashMap;

use super::candidate::{Generated, PoolCandidate, RetrievedInfo, Source, FEATURE_COUNT};
use super::extract::{extract, stem_key, DocumentText};
use super::features::document_features;
use super::neighbors::Retrieved;
use super::tables::PhraseTable;
use crate::one2set::candidates::Candidate;
use crate::preprocess::{tokenize, EOS, UNK};

/// A generator phrase that the evaluation would drop (`<unk>`, `,`, `.`) or that has no tokens
/// does not enter the pool.
fn usable(tokens: &[String]) -> bool {
    !tokens.is_empty()
        && !tokens
            .iter()
            .any(|t| t == "," || t == "." || t == UNK || t == EOS)
}

/// Merges the extractor's candidates (up to the table's `max_words`) with the generator's
/// (`generated`: sorted by confidence, as the generator returns them; `present_codes`: how many
/// of its control codes are present ones) and the retrieved ones (best voted first), and computes
/// every candidate's features.
pub fn build_pool(
    doc: &DocumentText,
    generated: &[Candidate],
    present_codes: usize,
    retrieved: &[Retrieved],
    table: &PhraseTable,
) -> Vec<PoolCandidate> {
    let mut pool: Vec<PoolCandidate> = extract(doc, table.max_words)
        .into_iter()
        .map(|e| PoolCandidate {
            phrase: e.words.join(" "),
            key: e.key,
            tokens: e.words,
            positions: e.positions,
            source: Source {
                extractor: true,
                ..Source::default()
            },
            generated: None,
            retrieved: None,
            features: [0.0; FEATURE_COUNT],
        })
        .collect();
    let mut index: HashMap<String, usize> = pool
        .iter()
        .enumerate()
        .map(|(i, c)| (c.key.clone(), i))
        .collect();
    for (rank, g) in generated.iter().enumerate() {
        let tokens = tokenize(&g.phrase);
        if !usable(&tokens) {
            continue;
        }
        let key = stem_key(&tokens);
        let info = Generated {
            score: g.score,
            rank,
            present_code: g.slot < present_codes,
        };
        match index.get(&key) {
            // Sorted by confidence: the first time a key is seen is its best.
            Some(&i) if pool[i].generated.is_some() => {}
            Some(&i) => {
                pool[i].source.generator = true;
                pool[i].generated = Some(info);
            }
            None => {
                index.insert(key.clone(), pool.len());
                let mut c = outside_candidate(doc, key, tokens);
                c.source.generator = true;
                c.generated = Some(info);
                pool.push(c);
            }
        }
    }
    for (rank, r) in retrieved.iter().enumerate() {
        let tokens = tokenize(&r.phrase);
        if !usable(&tokens) {
            continue;
        }
        let info = RetrievedInfo {
            score: r.score,
            docs: r.docs,
            rank,
        };
        let i = match index.get(&r.key) {
            Some(&i) => i,
            None => {
                index.insert(r.key.clone(), pool.len());
                pool.push(outside_candidate(doc, r.key.clone(), tokens));
                pool.len() - 1
            }
        };
        if pool[i].retrieved.is_none() {
            pool[i].source.retrieval = true;
            pool[i].retrieved = Some(info);
        }
    }
    document_features(doc, &mut pool, table);
    pool
}

/// A candidate that the extractor did not propose (absent, or present across a stopword).
fn outside_candidate(doc: &DocumentText, key: String, tokens: Vec<String>) -> PoolCandidate {
    let stems: Vec<String> = key.split(' ').map(str::to_string).collect();
    PoolCandidate {
        phrase: tokens.join(" "),
        positions: doc.occurrences(&stems),
        key,
        tokens,
        source: Source::default(),
        generated: None,
        retrieved: None,
        features: [0.0; FEATURE_COUNT],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen(phrase: &str, score: f64, slot: usize) -> Candidate {
        Candidate {
            phrase: phrase.into(),
            score,
            slot,
            present: false,
        }
    }

    #[test]
    fn merges_by_stem_and_marks_sources() {
        let doc = DocumentText::new("Neural networks", "We train neural networks on graphs.");
        let table = PhraseTable {
            docs: 10,
            max_words: 3,
            ..PhraseTable::default()
        };
        let generated = [
            gen("neural network", 0.9, 0),
            gen("deep learning", 0.5, 12),
            gen("neural networks", 0.4, 3),
            gen("<unk> model", 0.8, 1),
            gen("graph , x", 0.8, 2),
        ];
        let retrieved = [Retrieved {
            phrase: "graph learning".into(),
            key: "graph learn".into(),
            score: 1.5,
            docs: 2,
        }];
        let pool = build_pool(&doc, &generated, 10, &retrieved, &table);
        let nn = pool.iter().find(|c| c.key == "neural network").unwrap();
        assert_eq!(nn.source.name(), "extractor+generator");
        assert_eq!(nn.phrase, "neural networks", "the text's own form");
        assert_eq!(nn.generated.unwrap().score, 0.9);
        assert!(nn.generated.unwrap().present_code);
        let dl = pool.iter().find(|c| c.key == "deep learn").unwrap();
        assert_eq!(dl.source.name(), "generator");
        let gl = pool.iter().find(|c| c.key == "graph learn").unwrap();
        assert_eq!(gl.source.name(), "retrieval");
        assert_eq!(gl.retrieved.unwrap().docs, 2);
        assert!(!gl.present());
        assert!(!dl.present() && !dl.generated.unwrap().present_code);
        assert!(pool
            .iter()
            .all(|c| !c.phrase.contains("<unk>") && !c.phrase.contains(',')));
        let train = pool.iter().find(|c| c.key == "train").unwrap();
        assert_eq!(
            serde_json::to_string(&train.source).unwrap(),
            "\"extractor\""
        );
        assert!(train.present());
    }
}
