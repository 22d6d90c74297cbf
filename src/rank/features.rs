//! The ranker's features: what the classic supervised extractors found to predict a keyphrase
//! (KEA's TF-IDF, first position and keyphraseness; Hulth 2003's phrase length and title words),
//! the candidate's relation to the phrases around it, and what the generator said of it.
//!
//! Every feature is a plain number; "does not apply" is -1 (a position of an absent candidate, the
//! generator's confidence of an extracted one), never NaN, so trees compare it as trained.

use std::collections::HashMap;

use super::candidate::PoolCandidate;
pub use super::candidate::FEATURE_COUNT;
use super::extract::DocumentText;
use super::tables::PhraseTable;

/// The features in the order of a ranker's `features` list; a ranker trained on another list is
/// refused at load.
pub const FEATURE_NAMES: [&str; FEATURE_COUNT] = [
    "words",
    "chars",
    "tf",
    "title_tf",
    "idf",
    "tfidf",
    "tfidf_rank",
    "tfidf_rank_frac",
    "first_pos",
    "first_pos_frac",
    "spread_frac",
    "doc_len",
    "df",
    "keyphrase_docs",
    "keyphraseness",
    "head_keyphraseness",
    "head_idf",
    "min_word_idf",
    "mean_word_idf",
    "super_tf_ratio",
    "min_word_tf_ratio",
    "extracted",
    "generated",
    "generator_score",
    "generator_rank",
    "generator_present_code",
    "retrieved",
    "retrieval_score",
    "retrieval_docs",
    "retrieval_rank",
    "present",
    "pool_size",
];

/// `count / total`, 0 when `total` is 0.
fn ratio(count: f64, total: f64) -> f64 {
    if total > 0.0 {
        count / total
    } else {
        0.0
    }
}

fn keyphraseness(table: &PhraseTable, key: &str) -> f64 {
    let s = table.get(key);
    ratio(s.keyphrase_docs as f64, s.df as f64)
}

/// Whether `inner` occurs as a contiguous run of `outer` (and is shorter).
fn strictly_inside(inner: &[&str], outer: &[&str]) -> bool {
    inner.len() < outer.len() && outer.windows(inner.len()).any(|w| w == inner)
}

/// Fills the features of every candidate of one document's pool.
pub fn document_features(doc: &DocumentText, pool: &mut [PoolCandidate], table: &PhraseTable) {
    let doc_len = doc.len().max(1) as f64;
    let mut stem_counts: HashMap<&str, usize> = HashMap::new();
    for s in &doc.stems {
        *stem_counts.entry(s.as_str()).or_default() += 1;
    }
    let stems: Vec<Vec<&str>> = pool.iter().map(|c| c.key.split(' ').collect()).collect();
    let tf: Vec<f64> = pool.iter().map(|c| c.positions.len() as f64).collect();
    let tfidf: Vec<f64> = pool
        .iter()
        .zip(&tf)
        .map(|(c, &tf)| tf * table.idf(&c.key))
        .collect();
    // Rank by TF-IDF, ties by first occurrence (absent candidates last).
    let mut order: Vec<usize> = (0..pool.len()).collect();
    let first = |i: usize| pool[i].positions.first().copied().unwrap_or(usize::MAX);
    order.sort_by(|&a, &b| tfidf[b].total_cmp(&tfidf[a]).then(first(a).cmp(&first(b))));
    let mut tfidf_rank = vec![0usize; pool.len()];
    for (r, &i) in order.iter().enumerate() {
        tfidf_rank[i] = r;
    }
    let n = pool.len() as f64;
    let mut all = Vec::with_capacity(pool.len());
    for i in 0..pool.len() {
        let super_tf = (0..pool.len())
            .filter(|&j| j != i && strictly_inside(&stems[i], &stems[j]))
            .map(|j| tf[j])
            .fold(0.0, f64::max);
        let c = &pool[i];
        let words = &stems[i];
        let word_idf: Vec<f64> = words.iter().map(|w| table.idf(w)).collect();
        let min_word_tf = words
            .iter()
            .map(|w| stem_counts.get(w).copied().unwrap_or(0) as f64)
            .fold(f64::INFINITY, f64::min);
        let head = words.last().copied().unwrap_or("");
        let stats = table.get(&c.key);
        let (first_pos, spread) = match (c.positions.first(), c.positions.last()) {
            (Some(&f), Some(&l)) => (f as f64, (l - f) as f64 / doc_len),
            _ => (-1.0, -1.0),
        };
        let title_tf = c
            .positions
            .iter()
            .filter(|&&p| p + words.len() <= doc.title_len)
            .count() as f64;
        let (g, r) = (c.generated, c.retrieved);
        let f = [
            words.len() as f64,
            c.phrase.chars().count() as f64,
            tf[i],
            title_tf,
            table.idf(&c.key),
            tfidf[i],
            tfidf_rank[i] as f64,
            ratio(tfidf_rank[i] as f64, n),
            first_pos,
            if first_pos < 0.0 {
                -1.0
            } else {
                first_pos / doc_len
            },
            spread,
            doc.len() as f64,
            stats.df as f64,
            stats.keyphrase_docs as f64,
            keyphraseness(table, &c.key),
            keyphraseness(table, head),
            table.idf(head),
            word_idf.iter().copied().fold(f64::INFINITY, f64::min),
            word_idf.iter().sum::<f64>() / word_idf.len().max(1) as f64,
            ratio(super_tf, tf[i]),
            ratio(min_word_tf, tf[i]),
            f64::from(u8::from(c.source.extractor)),
            f64::from(u8::from(c.source.generator)),
            g.map_or(-1.0, |g| g.score),
            g.map_or(-1.0, |g| g.rank as f64),
            g.map_or(-1.0, |g| f64::from(u8::from(g.present_code))),
            f64::from(u8::from(c.source.retrieval)),
            r.map_or(-1.0, |r| r.score),
            r.map_or(-1.0, |r| r.docs as f64),
            r.map_or(-1.0, |r| r.rank as f64),
            f64::from(u8::from(c.present())),
            n,
        ];
        all.push(f);
    }
    for (c, f) in pool.iter_mut().zip(all) {
        c.features = f;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::pool::build_pool;
    use crate::rank::tables::PhraseStats;

    fn feature(c: &PoolCandidate, name: &str) -> f64 {
        c.features[FEATURE_NAMES.iter().position(|n| *n == name).unwrap()]
    }

    #[test]
    fn hand_computed_features() {
        let doc = DocumentText::new("Graph networks", "Graph networks and graph kernels.");
        let mut table = PhraseTable {
            docs: 99,
            max_words: 3,
            ..PhraseTable::default()
        };
        table.phrases.insert(
            "graph network".into(),
            PhraseStats {
                df: 10,
                keyphrase_docs: 4,
            },
        );
        table.phrases.insert(
            "network".into(),
            PhraseStats {
                df: 50,
                keyphrase_docs: 5,
            },
        );
        let pool = build_pool(&doc, &[], 10, &[], &table);
        let gn = pool.iter().find(|c| c.key == "graph network").unwrap();
        assert_eq!(feature(gn, "tf"), 2.0);
        assert_eq!(feature(gn, "title_tf"), 1.0);
        assert_eq!(feature(gn, "first_pos"), 0.0);
        assert!((feature(gn, "idf") - (100.0f64 / 11.0).ln()).abs() < 1e-12);
        assert_eq!(feature(gn, "keyphraseness"), 0.4);
        assert_eq!(feature(gn, "head_keyphraseness"), 0.1);
        assert_eq!(feature(gn, "generator_score"), -1.0);
        assert_eq!(feature(gn, "present"), 1.0);
        // "graph" occurs 3 times; "graph networks" holds it twice.
        let g = pool.iter().find(|c| c.key == "graph").unwrap();
        assert_eq!(feature(g, "tf"), 3.0);
        assert!((feature(g, "super_tf_ratio") - 2.0 / 3.0).abs() < 1e-12);
        assert!(
            (feature(gn, "min_word_tf_ratio") - 1.0).abs() < 1e-12,
            "network: 2 of 2"
        );
        assert_eq!(FEATURE_NAMES.len(), FEATURE_COUNT);
    }
}
