//! A candidate of a document's pool ([`super::pool`]): its text, where it came from, what the
//! generator and retrieval said of it, and its feature vector ([`super::features`]).

use serde::{Serialize, Serializer};

/// The length of [`super::features::FEATURE_NAMES`]: the features every candidate carries.
pub const FEATURE_COUNT: usize = 32;

/// Which stages proposed a candidate; written out as their names joined by `+`
/// (`"extractor+generator"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Source {
    pub extractor: bool,
    pub generator: bool,
    pub retrieval: bool,
}

impl Source {
    pub fn name(self) -> String {
        [
            (self.extractor, "extractor"),
            (self.generator, "generator"),
            (self.retrieval, "retrieval"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join("+")
    }
}

impl Serialize for Source {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

/// What retrieval said of a candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrievedInfo {
    /// Summed similarity of the neighbours that have it as a keyphrase.
    pub score: f64,
    /// How many neighbours have it.
    pub docs: usize,
    /// Its place in the vote (0 = best).
    pub rank: usize,
}

/// What the generator said of a candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Generated {
    /// Its confidence (mean token probability).
    pub score: f64,
    /// Its place in the generator's confidence order (0 = most confident).
    pub rank: usize,
    /// Whether a present control code (rather than an absent one) produced it.
    pub present_code: bool,
}

/// A candidate of the pool.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolCandidate {
    /// As it is written out: lowercased tokens joined by spaces.
    pub phrase: String,
    /// Stemmed tokens joined by spaces.
    pub key: String,
    pub tokens: Vec<String>,
    /// Start positions of its occurrences in the [`super::extract::DocumentText`] (empty for an absent one).
    pub positions: Vec<usize>,
    pub source: Source,
    pub generated: Option<Generated>,
    pub retrieved: Option<RetrievedInfo>,
    /// [`super::features::FEATURE_NAMES`] order; filled by [`super::pool::build_pool`].
    pub features: [f64; FEATURE_COUNT],
}

impl PoolCandidate {
    /// Whether it occurs in the title or abstract (after stemming), as the evaluation decides.
    pub fn present(&self) -> bool {
        !self.positions.is_empty()
    }
}
