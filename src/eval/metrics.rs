//! Precision, recall and F1 at a cutoff, macro-averaged over documents, as One2Set's
//! `evaluate_prediction.py` computes them (`compute_classification_metrics_at_ks` and
//! `report_stat_and_scores` in jiacheng-ye/kg_one2set):
//!
//! - @k looks at the top k predictions and divides by k even when there are fewer; @M looks at
//!   all of them; a document without predictions scores 0;
//! - P and R are averaged over all documents (one without gold of a kind still counts, with
//!   recall 0); the F1 reported is the harmonic mean of the macro P and the macro R, not the mean
//!   of per-document F1s.

use serde::Serialize;

use super::{DocumentMatches, Matches};

/// Where the ranked predictions are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cutoff {
    /// The top k, scored over k.
    Top(usize),
    /// All predictions (the "M" of F1@M).
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Present,
    Absent,
}

impl Matches {
    /// This document's precision and recall at `cutoff`.
    pub fn precision_recall(&self, cutoff: Cutoff) -> (f64, f64) {
        let n = self.is_match.len();
        if n == 0 {
            return (0.0, 0.0);
        }
        let (considered, denominator) = match cutoff {
            Cutoff::Top(k) => (k.min(n), k),
            Cutoff::All => (n, n),
        };
        let hits = self.is_match[..considered].iter().filter(|&&m| m).count() as f64;
        let precision = if denominator > 0 {
            hits / denominator as f64
        } else {
            0.0
        };
        let recall = if self.num_gold > 0 {
            hits / self.num_gold as f64
        } else {
            0.0
        };
        (precision, recall)
    }
}

impl DocumentMatches {
    pub fn kind(&self, kind: Kind) -> &Matches {
        match kind {
            Kind::Present => &self.present,
            Kind::Absent => &self.absent,
        }
    }
}

/// Macro precision and recall over `docs` (0 for no documents).
pub fn macro_precision_recall(docs: &[DocumentMatches], kind: Kind, cutoff: Cutoff) -> (f64, f64) {
    if docs.is_empty() {
        return (0.0, 0.0);
    }
    let (p, r) = docs
        .iter()
        .map(|d| d.kind(kind).precision_recall(cutoff))
        .fold((0.0, 0.0), |(sp, sr), (p, r)| (sp + p, sr + r));
    (p / docs.len() as f64, r / docs.len() as f64)
}

/// The harmonic mean, 0 when both are 0.
pub fn f1(precision: f64, recall: f64) -> f64 {
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}

/// The six figures of one kind, named as in the JSON output.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scores {
    #[serde(rename = "P@5")]
    pub p_at_5: f64,
    #[serde(rename = "R@5")]
    pub r_at_5: f64,
    #[serde(rename = "F1@5")]
    pub f1_at_5: f64,
    #[serde(rename = "P@M")]
    pub p_at_m: f64,
    #[serde(rename = "R@M")]
    pub r_at_m: f64,
    #[serde(rename = "F1@M")]
    pub f1_at_m: f64,
}

impl Scores {
    pub fn of(docs: &[DocumentMatches], kind: Kind) -> Self {
        let (p_at_5, r_at_5) = macro_precision_recall(docs, kind, Cutoff::Top(5));
        let (p_at_m, r_at_m) = macro_precision_recall(docs, kind, Cutoff::All);
        Scores {
            p_at_5,
            r_at_5,
            f1_at_5: f1(p_at_5, r_at_5),
            p_at_m,
            r_at_m,
            f1_at_m: f1(p_at_m, r_at_m),
        }
    }
}

/// What `kpg eval` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub documents: usize,
    pub present: Scores,
    pub absent: Scores,
    pub dup_token_ratio: f64,
    /// Pool recall, when the predictions list `candidates` ([`super::pool`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<super::pool::PoolReport>,
}

impl Report {
    pub fn of(docs: &[DocumentMatches]) -> Self {
        let ratio = if docs.is_empty() {
            0.0
        } else {
            docs.iter().map(|d| d.dup_token_ratio).sum::<f64>() / docs.len() as f64
        };
        Report {
            documents: docs.len(),
            present: Scores::of(docs, Kind::Present),
            absent: Scores::of(docs, Kind::Absent),
            dup_token_ratio: ratio,
            pool: None,
        }
    }

    /// A table for people: the figures to three decimals, as papers print them.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<8} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}\n",
            "", "P@5", "R@5", "F1@5", "P@M", "R@M", "F1@M"
        );
        for (name, s) in [("present", &self.present), ("absent", &self.absent)] {
            out.push_str(&format!(
                "{:<8} {:>6.3} {:>6.3} {:>6.3} {:>6.3} {:>6.3} {:>6.3}\n",
                name, s.p_at_5, s.r_at_5, s.f1_at_5, s.p_at_m, s.r_at_m, s.f1_at_m
            ));
        }
        out.push_str(&format!(
            "{} documents, duplicate token ratio {:.3}",
            self.documents, self.dup_token_ratio
        ));
        if let Some(p) = &self.pool {
            out.push_str(&format!(
                "\npool: {:.1} candidates/document; recall present {:.3} (macro {:.3}), absent \
                 {:.3} (macro {:.3})",
                p.candidates_per_document,
                p.present.recall_micro,
                p.present.recall_macro,
                p.absent.recall_micro,
                p.absent.recall_macro
            ));
        }
        out
    }
}

/// Macro (precision, recall) at every cutoff k = 1..=M, M being the most predictions of this
/// kind any document has (at least 1): the points of a precision-recall curve.
pub fn precision_recall_curve(docs: &[DocumentMatches], kind: Kind) -> Vec<(f64, f64)> {
    let max_k = docs
        .iter()
        .map(|d| d.kind(kind).is_match.len())
        .max()
        .unwrap_or(0)
        .max(1);
    (1..=max_k)
        .map(|k| macro_precision_recall(docs, kind, Cutoff::Top(k)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(is_match: &[bool], num_gold: usize) -> Matches {
        Matches {
            is_match: is_match.to_vec(),
            num_gold,
        }
    }

    fn close(a: (f64, f64), b: (f64, f64)) -> bool {
        (a.0 - b.0).abs() < 1e-12 && (a.1 - b.1).abs() < 1e-12
    }

    #[test]
    fn fewer_than_five_predictions_still_divide_by_five() {
        let m = matches(&[true, false, true], 4);
        assert!(close(
            m.precision_recall(Cutoff::Top(5)),
            (2.0 / 5.0, 2.0 / 4.0)
        ));
        assert!(close(
            m.precision_recall(Cutoff::All),
            (2.0 / 3.0, 2.0 / 4.0)
        ));
    }

    #[test]
    fn top_five_ignores_later_hits() {
        let m = matches(&[false, false, false, false, false, true, true], 2);
        assert!(close(m.precision_recall(Cutoff::Top(5)), (0.0, 0.0)));
        assert!(close(m.precision_recall(Cutoff::All), (2.0 / 7.0, 1.0)));
    }

    #[test]
    fn no_predictions_or_no_gold_score_zero() {
        assert!(close(
            matches(&[], 3).precision_recall(Cutoff::All),
            (0.0, 0.0)
        ));
        assert!(close(
            matches(&[false, false], 0).precision_recall(Cutoff::All),
            (0.0, 0.0)
        ));
    }

    #[test]
    fn f1_is_the_harmonic_mean_of_macro_averages() {
        let doc = |present: Matches| DocumentMatches {
            present,
            absent: Matches::default(),
            dup_token_ratio: 0.0,
        };
        // Document 1: P@M 1, R@M 1/2. Document 2: P@M 0, R@M 0 (no predictions).
        let docs = [doc(matches(&[true], 2)), doc(matches(&[], 1))];
        let r = Report::of(&docs);
        assert!((r.present.p_at_m - 0.5).abs() < 1e-12);
        assert!((r.present.r_at_m - 0.25).abs() < 1e-12);
        assert!((r.present.f1_at_m - 2.0 * 0.5 * 0.25 / 0.75).abs() < 1e-12);
        assert_eq!(r.absent.f1_at_5, 0.0);
        assert_eq!(precision_recall_curve(&docs, Kind::Present).len(), 1);
        assert_eq!(precision_recall_curve(&docs, Kind::Absent).len(), 1);
    }
}
