//! The ranker's cut over probabilities a selector has moved: each candidate the selector judged
//! gets `sigmoid(logit(ranker probability) + w · logit(P(true)))`, the candidates it did not see
//! keep the ranker's probability, and the ranker's cut ([`super::cut`]: the thresholds, then the
//! top-up to `min_present`) runs on the result, most probable first.
//!
//! A small selector is a weak judge on its own (its keep decisions alone score below the ranker's
//! cut on validation data, docs/QUALITY.md) but a useful second opinion: adding its log-odds, scaled
//! by w, to the ranker's lets it move a candidate across the threshold only when it is sure. w = 0
//! is the ranker's cut; P(true) = 0.5 moves nothing.

use super::CutOptions;

/// Log-odds stay finite: a probability of exactly 0 or 1 (an underflowed softmax) is clamped here.
const CLAMP: f64 = 1e-9;

fn logit(p: f64) -> f64 {
    let p = p.clamp(CLAMP, 1.0 - CLAMP);
    (p / (1.0 - p)).ln()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The ranker's probability moved by the selector's P(true), `weight` times its log-odds.
pub fn fused_probability(ranker: f64, p_true: Option<f32>, weight: f64) -> f64 {
    match p_true {
        Some(p) if weight != 0.0 => sigmoid(logit(ranker) + weight * logit(f64::from(p))),
        _ => ranker,
    }
}

/// One candidate of the ranked pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FusionInput {
    /// The ranker's probability.
    pub ranker: f64,
    pub present: bool,
    /// The selector's P(true), when it judged the candidate.
    pub p_true: Option<f32>,
}

/// The pool's order after fusion (most probable first, ties in pool order), each index with its
/// fused probability and whether the cut keeps it. `cut.present_threshold` is replaced by
/// `present_threshold` when given.
pub fn fuse_and_cut(
    pool: &[FusionInput],
    weight: f64,
    present_threshold: Option<f64>,
    cut: &CutOptions,
) -> Vec<(usize, f64, bool)> {
    let mut order: Vec<(usize, f64)> = pool
        .iter()
        .enumerate()
        .map(|(i, c)| (i, fused_probability(c.ranker, c.p_true, weight)))
        .collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1));
    let opts = cut.with_present_threshold(present_threshold);
    let list: Vec<(f64, bool)> = order.iter().map(|&(i, p)| (p, pool[i].present)).collect();
    let kept = super::cut_flags(&list, &opts);
    order
        .into_iter()
        .zip(kept)
        .map(|((i, p), k)| (i, p, k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> CutOptions {
        CutOptions {
            present_threshold: 0.3,
            absent_threshold: 0.05,
            min_present: 2,
            pool_size: 30,
            absent_slots: 3,
        }
    }

    fn c(ranker: f64, present: bool, p_true: Option<f32>) -> FusionInput {
        FusionInput {
            ranker,
            present,
            p_true,
        }
    }

    #[test]
    fn weight_zero_and_an_unsure_selector_change_nothing() {
        for p in [0.0, 0.01, 0.3, 0.999, 1.0] {
            assert_eq!(fused_probability(p, Some(0.9), 0.0), p);
            assert!(
                (fused_probability(p, Some(0.5), 1.0) - p).abs() < 1e-8,
                "{p}"
            );
            assert_eq!(fused_probability(p, None, 2.0), p);
        }
        // Saturated inputs stay finite and ordered.
        let lo = fused_probability(0.0, Some(0.0), 1.0);
        let hi = fused_probability(1.0, Some(1.0), 1.0);
        assert!(lo.is_finite() && hi.is_finite() && lo < hi);
    }

    #[test]
    fn the_selector_moves_candidates_across_the_threshold_and_reorders() {
        let pool = [
            c(0.6, true, Some(0.05)), // vetoed: falls to 0.07, under 0.3 and under 0.1
            c(0.4, true, Some(0.9)),  // promoted to first (0.86)
            c(0.2, true, Some(0.95)), // lifted over the threshold (0.83)
            c(0.1, true, None),       // not judged: keeps 0.1
            c(0.04, false, None),     // absent, under its threshold
        ];
        let out = fuse_and_cut(&pool, 1.0, None, &opts());
        let order: Vec<usize> = out.iter().map(|o| o.0).collect();
        assert_eq!(order, [1, 2, 3, 0, 4]);
        let kept: Vec<bool> = out.iter().map(|o| o.2).collect();
        assert_eq!(kept, [true, true, false, false, false]);
        // The fused probabilities are the ones reported.
        assert!((out[0].1 - fused_probability(0.4, Some(0.9), 1.0)).abs() < 1e-15);
        // A threshold none reaches: the top-up to two takes the two most probable present ones.
        let strict = fuse_and_cut(&pool, 1.0, Some(0.9), &opts());
        let kept: Vec<bool> = strict.iter().map(|o| o.2).collect();
        assert_eq!(kept, [true, true, false, false, false]);
        assert!(strict[1].1 < 0.9);
    }

    #[test]
    fn weight_zero_is_the_rankers_cut() {
        let pool = [
            c(0.9, true, Some(0.01)),
            c(0.5, false, Some(0.01)),
            c(0.25, true, Some(0.99)),
            c(0.2, true, Some(0.99)),
        ];
        let out = fuse_and_cut(&pool, 0.0, None, &opts());
        let kept: Vec<(usize, bool)> = out.iter().map(|o| (o.0, o.2)).collect();
        // 0.9 over the threshold, 0.5 absent over its own, 0.25 as the top-up to two present.
        assert_eq!(kept, [(0, true), (1, true), (2, true), (3, false)]);
    }
}
