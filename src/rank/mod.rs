//! The default path from a document to its keyphrases without an LLM: a wide candidate pool
//! (the extractor's n-grams and the generator's phrases, [`pool`]), ranked by gradient-boosted
//! trees ([`trees`]) over cheap features ([`features`]) and cut into one list that serves both
//! F1@5 and F1@M: the candidates whose probability reaches a threshold chosen on validation data,
//! topped up to `min_present` present ones.
//!
//! A ranker directory holds `phrases.tsv.gz` (document frequencies and keyphraseness of the
//! training corpus, [`tables`]) and `neighbors.tsv.gz` (the retrieval index of its documents and
//! their keyphrases, [`neighbors`]), both written by `kpg ranker tables`, and `ranker.json` (the
//! trees, the feature list they were trained on, the thresholds; `tools/train_ranker.py`).

pub mod build;
pub mod candidate;
pub mod extract;
pub mod features;
pub mod fusion;
pub mod neighbors;
pub mod pool;
pub mod stopwords;
mod table_file;
pub mod tables;
pub mod trees;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{KpgError, Result};
use crate::one2set::candidates::Candidate;
use candidate::Source;
use extract::DocumentText;
use features::FEATURE_NAMES;
use neighbors::{NeighborIndex, NEIGHBORS_FILE};
use pool::build_pool;
use tables::{PhraseTable, PHRASES_FILE};
use trees::{probability, Tree};

/// The trees and settings of a ranker directory.
pub const RANKER_FILE: &str = "ranker.json";
/// Where `kpg tag` looks for a ranker when `--ranker` is not given.
pub const DEFAULT_RANKER: &str = "models/ranker";
const FORMAT: &str = "kpg-ranker-1";

/// How the ranked pool becomes keyphrases.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CutOptions {
    /// A present candidate with at least this probability is a keyphrase.
    pub present_threshold: f64,
    /// An absent (generated) candidate with at least this probability is a keyphrase.
    pub absent_threshold: f64,
    /// Fewer present keyphrases than this are topped up with the most probable present candidates
    /// of the rest: F1@5 divides by five whatever the count, so a short list only loses there,
    /// while the threshold keeps F1@M's list as long as it pays.
    pub min_present: usize,
    /// Candidates kept (and written out, and shown to a selector) per document.
    pub pool_size: usize,
    /// Of those, places kept for the most probable absent (generated) candidates, when there are
    /// any: absent keyphrases are far less probable than present ones, and a plain cut by
    /// probability would leave none for the absent threshold to choose from.
    pub absent_slots: usize,
}

impl CutOptions {
    /// The probability a candidate must reach to be kept, by whether it is present.
    pub fn threshold(&self, present: bool) -> f64 {
        if present {
            self.present_threshold
        } else {
            self.absent_threshold
        }
    }

    /// These options with the present threshold replaced where one is given (a selector's
    /// `ranker_fusion.present_threshold`).
    pub fn with_present_threshold(self, present_threshold: Option<f64>) -> Self {
        CutOptions {
            present_threshold: present_threshold.unwrap_or(self.present_threshold),
            ..self
        }
    }
}

#[derive(Deserialize)]
struct RankerFile {
    format: String,
    features: Vec<String>,
    #[serde(flatten)]
    cut: CutOptions,
    trees: Vec<Tree>,
}

/// A loaded ranker: immutable, shared between threads.
pub struct Ranker {
    pub table: PhraseTable,
    pub neighbors: NeighborIndex,
    pub trees: Vec<Tree>,
    pub cut: CutOptions,
}

/// A ranked candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub phrase: String,
    pub present: bool,
    pub source: Source,
    /// The generator's confidence, when it proposed the phrase.
    pub generator_score: Option<f64>,
    /// The ranker's P(keyphrase).
    pub probability: f64,
    pub selected: bool,
}

impl Ranker {
    /// Loads `ranker.json`, `phrases.tsv.gz` and `neighbors.tsv.gz` from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(KpgError::MissingFile { path: dir.into() });
        }
        let path = dir.join(RANKER_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => KpgError::MissingFile { path: path.clone() },
            _ => KpgError::io(&path, e),
        })?;
        let file: RankerFile = serde_json::from_str(&text).map_err(|source| KpgError::Json {
            path: path.clone(),
            source,
        })?;
        let trees = Self::check(&path, file.format, &file.features, file.trees, &file.cut)?;
        let table = PhraseTable::load(&dir.join(PHRASES_FILE))?;
        let neighbors = NeighborIndex::load(&dir.join(NEIGHBORS_FILE))?;
        Ok(Ranker {
            table,
            neighbors,
            trees,
            cut: file.cut,
        })
    }

    fn check(
        path: &Path,
        format: String,
        features: &[String],
        trees: Vec<Tree>,
        cut: &CutOptions,
    ) -> Result<Vec<Tree>> {
        let bad = |field: &str, reason: String| KpgError::Config {
            path: path.to_path_buf(),
            field: field.into(),
            reason,
        };
        if format != FORMAT {
            return Err(bad("format", format!("`{format}`, expected `{FORMAT}`")));
        }
        if features.len() != FEATURE_NAMES.len()
            || features.iter().zip(FEATURE_NAMES).any(|(a, b)| a != b)
        {
            let first = features
                .iter()
                .zip(FEATURE_NAMES)
                .position(|(a, b)| a != b)
                .unwrap_or(features.len().min(FEATURE_NAMES.len()));
            return Err(bad(
                "features",
                format!(
                    "trained on other features than this kpg computes (they differ at position \
                     {first}: {:?} against {:?}); retrain with tools/train_ranker.py",
                    features.get(first),
                    FEATURE_NAMES.get(first)
                ),
            ));
        }
        for (name, v) in [
            ("present_threshold", cut.present_threshold),
            ("absent_threshold", cut.absent_threshold),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(bad(name, format!("{v} is not a probability")));
            }
        }
        if cut.pool_size == 0 || cut.absent_slots > cut.pool_size {
            return Err(bad(
                "pool_size",
                format!(
                    "must be at least 1 and at least absent_slots ({})",
                    cut.absent_slots
                ),
            ));
        }
        for (i, t) in trees.iter().enumerate() {
            t.validate(FEATURE_NAMES.len())
                .map_err(|reason| bad(&format!("trees[{i}]"), reason))?;
        }
        Ok(trees)
    }

    /// Ranks one document's pool (the extractor's candidates and `generated`, the generator's,
    /// whose first `present_codes` control codes are present ones) and cuts it.
    pub fn rank(
        &self,
        doc: &DocumentText,
        generated: &[Candidate],
        present_codes: usize,
    ) -> Vec<Ranked> {
        let retrieved = self.neighbors.retrieve(doc, &self.table);
        let pool = build_pool(doc, generated, present_codes, &retrieved, &self.table);
        let mut ranked: Vec<Ranked> = pool
            .into_iter()
            .map(|c| Ranked {
                probability: probability(&self.trees, &c.features),
                present: c.present(),
                generator_score: c.generated.map(|g| g.score),
                source: c.source,
                phrase: c.phrase,
                selected: false,
            })
            .collect();
        // Stable: equal probabilities keep pool order (extracted in order of first occurrence).
        ranked.sort_by(|a, b| b.probability.total_cmp(&a.probability));
        let mut ranked = keep_pool(ranked, &self.cut);
        cut(&mut ranked, &self.cut);
        ranked
    }
}

/// The pool of a ranked list (most probable first): up to `absent_slots` absent candidates, the
/// most probable present ones in the rest of `pool_size`, in probability order.
pub fn keep_pool(ranked: Vec<Ranked>, opts: &CutOptions) -> Vec<Ranked> {
    let absent = ranked.iter().filter(|r| !r.present).count();
    let absent_kept = absent.min(opts.absent_slots).min(opts.pool_size);
    let present_kept = opts.pool_size - absent_kept;
    let (mut p, mut a) = (0, 0);
    ranked
        .into_iter()
        .filter(|r| {
            let (count, limit) = if r.present {
                (&mut p, present_kept)
            } else {
                (&mut a, absent_kept)
            };
            *count += 1;
            *count <= limit
        })
        .collect()
}

/// Marks the keyphrases of a ranked list (most probable first): those at or above their kind's
/// threshold, then the most probable present ones of the rest until `min_present` are present.
pub fn cut(ranked: &mut [Ranked], opts: &CutOptions) {
    let list: Vec<(f64, bool)> = ranked.iter().map(|r| (r.probability, r.present)).collect();
    for (r, keep) in ranked.iter_mut().zip(cut_flags(&list, opts)) {
        r.selected = keep;
    }
}

/// [`cut`] over `(probability, present)` pairs, most probable first: which are kept.
pub fn cut_flags(list: &[(f64, bool)], opts: &CutOptions) -> Vec<bool> {
    let mut kept: Vec<bool> = list
        .iter()
        .map(|&(p, present)| p >= opts.threshold(present))
        .collect();
    let mut present = list
        .iter()
        .zip(&kept)
        .filter(|(&(_, is_present), &k)| k && is_present)
        .count();
    for (&(_, is_present), k) in list.iter().zip(kept.iter_mut()) {
        if present >= opts.min_present {
            break;
        }
        if is_present && !*k {
            *k = true;
            present += 1;
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranked(p: f64, present: bool) -> Ranked {
        Ranked {
            phrase: format!("{p}"),
            present,
            source: Source::default(),
            generator_score: None,
            probability: p,
            selected: false,
        }
    }

    #[test]
    fn cut_by_threshold_then_top_up() {
        let opts = CutOptions {
            present_threshold: 0.5,
            absent_threshold: 0.8,
            min_present: 3,
            pool_size: 10,
            absent_slots: 2,
        };
        let mut r = vec![
            ranked(0.9, true),
            ranked(0.7, false),
            ranked(0.6, true),
            ranked(0.1, true),
            ranked(0.05, true),
        ];
        cut(&mut r, &opts);
        let sel: Vec<bool> = r.iter().map(|r| r.selected).collect();
        // 0.7 absent is under its threshold and does not count; 0.1 present tops up to three.
        assert_eq!(sel, [true, false, true, true, false]);
        let mut r = vec![
            ranked(0.9, true),
            ranked(0.85, false),
            ranked(0.6, true),
            ranked(0.55, true),
        ];
        cut(&mut r, &opts);
        assert!(
            r.iter().all(|r| r.selected),
            "more than the minimum when they pass"
        );
    }

    #[test]
    fn pool_keeps_places_for_absent_candidates() {
        let opts = CutOptions {
            present_threshold: 0.5,
            absent_threshold: 0.5,
            min_present: 1,
            pool_size: 4,
            absent_slots: 2,
        };
        let list = vec![
            ranked(0.9, true),
            ranked(0.8, true),
            ranked(0.7, true),
            ranked(0.6, true),
            ranked(0.2, false),
            ranked(0.1, true),
            ranked(0.05, false),
            ranked(0.01, false),
        ];
        let kept: Vec<(f64, bool)> = keep_pool(list.clone(), &opts)
            .iter()
            .map(|r| (r.probability, r.present))
            .collect();
        assert_eq!(
            kept,
            [(0.9, true), (0.8, true), (0.2, false), (0.05, false)]
        );
        // Fewer absent candidates than places: present ones fill the rest.
        let only_one_absent: Vec<Ranked> = list[..5].to_vec();
        assert_eq!(keep_pool(only_one_absent, &opts).len(), 4);
        assert_eq!(
            keep_pool(list[..5].to_vec(), &opts)
                .iter()
                .filter(|r| !r.present)
                .count(),
            1
        );
    }
}
