//! How wide a candidate net is: of the gold keyphrases, the share that a document's candidate
//! list holds anywhere (its recall, whatever the order), present and absent apart, and how many
//! candidates it took. A later stage (the ranker's cut, a selector) can only keep what the pool
//! holds, so every change to candidate generation is judged on this first.
//!
//! Candidates go through the protocol's filters ([`super::match_document`]): stemmed, those with
//! `,` `.` or `<unk>` dropped, duplicates after stemming counted once.

use std::collections::HashSet;

use serde::Serialize;

use super::input::GoldDocument;
use super::{is_present, is_valid_prediction, presence_source, stemmed_tokens, Tokenization};

/// One document's pool against its gold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolMatches {
    pub present_found: usize,
    pub present_gold: usize,
    pub absent_found: usize,
    pub absent_gold: usize,
    /// Distinct valid candidates.
    pub candidates: usize,
}

pub fn match_pool(
    doc: &GoldDocument,
    candidates: &[String],
    tokenization: Tokenization,
) -> PoolMatches {
    let source = presence_source(doc, tokenization);
    let pool: HashSet<Vec<String>> = candidates
        .iter()
        .map(|c| stemmed_tokens(c, tokenization))
        .filter(|c| is_valid_prediction(c))
        .collect();
    let gold: HashSet<Vec<String>> = doc
        .keyphrases
        .iter()
        .map(|g| stemmed_tokens(g, tokenization))
        .filter(|g| !g.is_empty())
        .collect();
    let mut m = PoolMatches {
        candidates: pool.len(),
        ..PoolMatches::default()
    };
    for g in &gold {
        let found = usize::from(pool.contains(g));
        if is_present(&source, g) {
            m.present_gold += 1;
            m.present_found += found;
        } else {
            m.absent_gold += 1;
            m.absent_found += found;
        }
    }
    m
}

/// Recall of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PoolRecall {
    /// Gold keyphrases found in the pools over all gold keyphrases.
    pub recall_micro: f64,
    /// The mean of per-document recall, over the documents with a gold keyphrase of this kind.
    pub recall_macro: f64,
    /// Gold keyphrases of this kind.
    pub gold: usize,
}

/// What `kpg eval` prints of the pools (`"pool"`), when the predictions have `candidates`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PoolReport {
    pub candidates_per_document: f64,
    pub present: PoolRecall,
    pub absent: PoolRecall,
}

fn recall(docs: &[PoolMatches], found: fn(&PoolMatches) -> (usize, usize)) -> PoolRecall {
    let (hits, gold) = docs
        .iter()
        .map(found)
        .fold((0, 0), |(h, g), (dh, dg)| (h + dh, g + dg));
    let per_doc: Vec<f64> = docs
        .iter()
        .map(found)
        .filter(|&(_, g)| g > 0)
        .map(|(h, g)| h as f64 / g as f64)
        .collect();
    PoolRecall {
        recall_micro: if gold > 0 {
            hits as f64 / gold as f64
        } else {
            0.0
        },
        recall_macro: if per_doc.is_empty() {
            0.0
        } else {
            per_doc.iter().sum::<f64>() / per_doc.len() as f64
        },
        gold,
    }
}

impl PoolReport {
    pub fn of(docs: &[PoolMatches]) -> Self {
        let n = docs.len().max(1) as f64;
        PoolReport {
            candidates_per_document: docs.iter().map(|d| d.candidates).sum::<usize>() as f64 / n,
            present: recall(docs, |d| (d.present_found, d.present_gold)),
            absent: recall(docs, |d| (d.absent_found, d.absent_gold)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_docs::{doc, strings};
    use super::*;

    #[test]
    fn hand_computed_pool_recall() {
        // Document 1: present gold {graph network, kernel}, absent gold {deep learning}.
        // Pool: "Graph Networks" (stems to gold), "kernels" (gold), "deep learning" (absent gold),
        // "x , y" (dropped), "kernel" (duplicate of "kernels").
        let d1 = doc(
            "Graph networks",
            "with kernels",
            &["graph network", "kernel", "deep learning"],
        );
        let m1 = match_pool(
            &d1,
            &strings(&[
                "Graph Networks",
                "kernels",
                "deep learning",
                "x , y",
                "kernel",
            ]),
            Tokenization::Kpg,
        );
        assert_eq!(
            m1,
            PoolMatches {
                present_found: 2,
                present_gold: 2,
                absent_found: 1,
                absent_gold: 1,
                candidates: 3
            }
        );
        // Document 2: present gold {a b, c}, absent {z}; the pool holds only "c".
        let d2 = doc("a b c", "", &["a b", "c", "z"]);
        let m2 = match_pool(&d2, &strings(&["c", "q"]), Tokenization::Kpg);
        assert_eq!(
            m2,
            PoolMatches {
                present_found: 1,
                present_gold: 2,
                absent_found: 0,
                absent_gold: 1,
                candidates: 2
            }
        );
        // Document 3: no gold at all; does not count in the macro means.
        let d3 = doc("t", "u", &[]);
        let m3 = match_pool(&d3, &strings(&["t"]), Tokenization::Kpg);
        let r = PoolReport::of(&[m1, m2, m3]);
        assert!((r.present.recall_micro - 3.0 / 4.0).abs() < 1e-12);
        assert!((r.present.recall_macro - (1.0 + 0.5) / 2.0).abs() < 1e-12);
        assert!((r.absent.recall_micro - 1.0 / 2.0).abs() < 1e-12);
        assert!((r.absent.recall_macro - 0.5).abs() < 1e-12);
        assert!((r.candidates_per_document - 6.0 / 3.0).abs() < 1e-12);
        assert_eq!((r.present.gold, r.absent.gold), (4, 2));
    }
}
