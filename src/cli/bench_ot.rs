//! `kpg bench ot`: training's target assignment (OT or Hungarian) on random problems shaped like a
//! training batch's document halves, in problems/s. `--dump` writes the problems in `kpg debug ot`'s
//! input format, so that the NumPy peer (`tools/peer_ot.py`) solves exactly the same ones;
//! `assign_sum` (the sum of every assigned target index) lets the two outputs be compared.

use std::time::Instant;

use serde_json::json;

use super::debug_ot::{InputProblem, OtInput};
use super::{print_line, AssignMethodArg, BenchOtArgs};
use crate::assign::{assign_batch, OtParams, Problem};
use crate::error::{KpgError, Result};
use crate::synth::splitmix64;

/// A random problem owned by the benchmark.
struct OwnedProblem {
    score: Vec<f64>, // [targets, slots]
    targets: usize,
    has_null: bool,
}

/// Uniform in [0, 1), a pure function of its key.
fn unit(key: u64) -> f64 {
    (splitmix64(key) >> 11) as f64 / (1u64 << 53) as f64
}

/// Problem `index` of `seed`: r real keyphrases, uniform in 0..=min(max_targets - 1, slots), plus
/// the null row when r < slots. Each score is a sum over the K = 2 assignment steps of a
/// probability: about half the slots already favour one random target (0.3 to 1 per step for it),
/// and every other probability is small and skewed towards 0 (0.2·x⁴), as a trained model's are.
fn random_problem(seed: u64, index: usize, max_targets: usize, slots: usize) -> OwnedProblem {
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
        has_null,
    }
}

pub fn bench_ot(args: BenchOtArgs) -> Result<i32> {
    if args.problems == 0 || args.targets == 0 || args.slots == 0 || args.repeats == 0 {
        return Err(KpgError::InvalidArgument(
            "--problems, --targets, --slots and --repeats must be at least 1".into(),
        ));
    }
    let owned: Vec<OwnedProblem> = (0..args.problems)
        .map(|i| random_problem(args.seed, i, args.targets, args.slots))
        .collect();
    let problems: Vec<Problem> = owned
        .iter()
        .map(|p| Problem {
            score: &p.score,
            targets: p.targets,
            slots: args.slots,
            has_null: p.has_null,
        })
        .collect();
    let params = OtParams::default();
    let method = args.method.into();
    // Warm-up: threads started, pages touched.
    let results = assign_batch(&problems, method, &params)?;
    let mut best = f64::INFINITY;
    for _ in 0..args.repeats {
        let start = Instant::now();
        std::hint::black_box(assign_batch(&problems, method, &params)?);
        best = best.min(start.elapsed().as_secs_f64());
    }
    if let Some(path) = &args.dump {
        let input = OtInput {
            tau: Some(params.tau),
            top_k: Some(params.top_k),
            eps: Some(params.eps),
            iters: Some(params.iters),
            problems: owned
                .iter()
                .map(|p| InputProblem {
                    score: p.score.chunks(args.slots).map(<[f64]>::to_vec).collect(),
                    has_null: p.has_null,
                })
                .collect(),
        };
        let text = serde_json::to_string(&input).expect("plain values");
        std::fs::write(path, text).map_err(|e| KpgError::io(path, e))?;
    }
    let with_null = owned.iter().filter(|p| p.has_null).count();
    let rows: usize = owned.iter().map(|p| p.targets).sum();
    let assign_sum: usize = results
        .iter()
        .map(|r| r.assign().iter().sum::<usize>())
        .sum();
    let n = args.problems as f64;
    print_line(
        &json!({
            "bench": "ot",
            "device": "cpu",
            "threads": rayon::current_num_threads(),
            "method": match args.method {
                AssignMethodArg::Ot => "ot",
                AssignMethodArg::Hungarian => "hungarian",
            },
            "problems": args.problems,
            "max_targets": args.targets,
            "slots": args.slots,
            "seed": args.seed,
            "mean_targets": rows as f64 / n,
            "has_null_share": with_null as f64 / n,
            "tau": params.tau,
            "top_k": params.top_k,
            "eps": params.eps,
            "iters": params.iters,
            "seconds": best,
            "problems_per_s": n / best,
            "assign_sum": assign_sum,
        })
        .to_string(),
    )?;
    Ok(0)
}
