//! Random assignment problems shaped like a training batch's document halves: what `kpg bench ot`
//! times and `kpg selftest` holds the CUDA Sinkhorn to. A pure function of (seed, index), so that
//! a dumped problem set is reproducible.

use super::OwnedProblem;
use crate::synth::splitmix64;

/// Uniform in [0, 1), a pure function of its key.
fn unit(key: u64) -> f64 {
    (splitmix64(key) >> 11) as f64 / (1u64 << 53) as f64
}

/// Problem `index` of `seed`: r real keyphrases, uniform in 0..=min(max_targets - 1, slots), plus
/// the null row when r < slots. Each score is a sum over the K = 2 assignment steps of a
/// probability: about half the slots already favour one random target (0.3 to 1 per step for it),
/// and every other probability is small and skewed towards 0 (0.2·x⁴), as a trained model's are.
pub fn random_problem(seed: u64, index: usize, max_targets: usize, slots: usize) -> OwnedProblem {
    let base = splitmix64(seed ^ ((index as u64) << 20));
    let mut k = 0u64;
    let mut next = || {
        k += 1;
        unit(base ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    };
    let max_real = (max_targets - 1).min(slots);
    let real = ((next() * (max_real + 1) as f64) as usize).min(max_real);
    let has_null = real < slots;
    let targets = real + usize::from(has_null);
    let mut score = vec![0.0; targets * slots];
    for j in 0..slots {
        let favoured = if next() < 0.5 {
            Some(((next() * targets as f64) as usize).min(targets - 1))
        } else {
            None
        };
        for i in 0..targets {
            let mut sum = 0.0;
            for _step in 0..2 {
                sum += if favoured == Some(i) {
                    0.3 + 0.7 * next()
                } else {
                    0.2 * next().powi(4)
                };
            }
            score[i * slots + j] = sum;
        }
    }
    OwnedProblem {
        score,
        targets,
        slots,
        has_null,
    }
}
