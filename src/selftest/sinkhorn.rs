//! Checks of the batched OT assignment (`kernels/sinkhorn.cu`) against its CPU twin
//! [`crate::assign::ot_batch`]: the reference fixtures, random batches shaped like `kpg bench ot`'s
//! (11 x 10, 21 x 20, 64 x 64), uneven mixes of every size from 1 x 1 up in one launch, the edge
//! cases of tests/assign.rs, and the gather from decoder distributions. Outputs are poisoned
//! (NaN, assignments -1) before every launch. Assignments and supplies must be equal; plans agree
//! within [`PLAN`].

use crate::assign::random::random_problem;
use crate::assign::{ot_batch, OtParams, OtResult, OwnedProblem, Problem};
use crate::autodiff::ops::copy::{copy_mass, CopyRow};
use crate::backend::cuda::sinkhorn::{
    ot_batch_cuda, DecoderDists, GatherProblem, SinkhornWorkspace,
};
use crate::backend::cuda::CudaDevice;
use crate::cli::debug_ot::{flatten, OtInput};
use crate::error::Result;
use crate::one2set::vocab::{NULL_ID, PAD_ID};
use crate::selftest::random::Rng;
use crate::selftest::{compare, Check, CheckResult, Tolerance, F32};

/// Plans: f64 on both sides, in the same order of operations except that the GPU's exp, log and
/// pow may differ from the host libm's in the last bit and the exps take (a - max a) / eps as one
/// product; the 1/eps = 1000 of the potentials amplifies that to about 1e-12. The bound is the one
/// tests/assign.rs holds the CPU to against NumPy. (Compared as f32, 6e-8 relative.)
pub const PLAN: Tolerance = Tolerance {
    atol: 1e-9,
    rtol: 1e-6,
    whole: 1e-6,
};

pub fn checks() -> Vec<Check> {
    vec![
        Check {
            name: "sinkhorn ot fixtures",
            run: fixtures_check,
        },
        Check {
            name: "sinkhorn ot random batches",
            run: random_check,
        },
        Check {
            name: "sinkhorn ot edge cases",
            run: edge_check,
        },
        Check {
            name: "sinkhorn ot gather",
            run: gather_check,
        },
    ]
}

/// Rows comparing GPU results with CPU ones: assignments, supplies, plans.
fn compare_results(name: &str, got: &[OtResult], want: &[OtResult]) -> Vec<CheckResult> {
    let mut assign_bad = None;
    let mut supply_bad = None;
    let (mut slots, mut targets) = (0, 0);
    let (mut plan_got, mut plan_want) = (Vec::new(), Vec::new());
    if got.len() != want.len() {
        return vec![CheckResult::exact(
            format!("{name}: results"),
            want.len(),
            Some(format!("{} results for {} problems", got.len(), want.len())),
        )];
    }
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        slots += w.assign.len();
        targets += w.supply.len();
        if g.assign != w.assign && assign_bad.is_none() {
            assign_bad = Some(format!("problem {k}: {:?} vs {:?}", g.assign, w.assign));
        }
        if g.supply != w.supply && supply_bad.is_none() {
            supply_bad = Some(format!("problem {k}: {:?} vs {:?}", g.supply, w.supply));
        }
        plan_got.extend(g.plan.iter().map(|&x| x as f32));
        plan_want.extend(w.plan.iter().map(|&x| x as f32));
    }
    vec![
        CheckResult::exact(format!("{name}: assign"), slots, assign_bad),
        CheckResult::exact(format!("{name}: supply"), targets, supply_bad),
        compare(format!("{name}: plan"), &plan_got, &plan_want, PLAN),
    ]
}

/// Solves `problems` on both sides (the GPU's outputs poisoned first) and compares.
fn run_case(
    dev: &CudaDevice,
    ws: &mut SinkhornWorkspace,
    name: &str,
    problems: &[OwnedProblem],
    params: &OtParams,
) -> Result<Vec<CheckResult>> {
    let views: Vec<Problem> = problems.iter().map(OwnedProblem::view).collect();
    let want = ot_batch(&views, params)?;
    ws.prepare(dev, &views)?;
    ws.poison(dev)?;
    ws.launch(dev, params)?;
    let got = ws.results(dev)?;
    Ok(compare_results(name, &got, &want))
}

fn fixtures_check(dev: &CudaDevice) -> Result<Vec<CheckResult>> {
    let mut ws = SinkhornWorkspace::default();
    let mut rows = Vec::new();
    for (name, text) in [
        (
            "sinkhorn fixtures problems.json",
            include_str!("../../tests/fixtures/ot/problems.json"),
        ),
        (
            "sinkhorn fixtures problems_params.json",
            include_str!("../../tests/fixtures/ot/problems_params.json"),
        ),
    ] {
        let input: OtInput = serde_json::from_str(text).expect("committed fixture");
        let problems = input
            .problems
            .iter()
            .enumerate()
            .map(|(k, p)| {
                let (score, targets, slots) = flatten(k, p)?;
                Ok(OwnedProblem {
                    score,
                    targets,
                    slots,
                    has_null: p.has_null,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        rows.extend(run_case(dev, &mut ws, name, &problems, &input.params())?);
    }
    Ok(rows)
}

/// `kpg bench ot`'s problems: up to `max_targets` rows (the null one counted) against `slots`.
fn bench_problems(seed: u64, n: usize, max_targets: usize, slots: usize) -> Vec<OwnedProblem> {
    (0..n)
        .map(|k| random_problem(seed, k, max_targets, slots))
        .collect()
}

/// A random problem of `slots` slots with `real` real targets (the null row added when fewer
/// than the slots), scores skewed towards 0 as a trained model's, some slots favouring a target.
fn random_owned(rng: &mut Rng, real: usize, slots: usize) -> OwnedProblem {
    let has_null = real < slots;
    let targets = real + usize::from(has_null);
    let mut score: Vec<f64> = (0..targets * slots)
        .map(|_| 0.2 * (rng.uniform().abs() as f64).powi(4))
        .collect();
    for j in 0..slots {
        if rng.below(2) == 0 {
            score[rng.below(targets) * slots + j] += 0.6 + 0.7 * rng.uniform().abs() as f64;
        }
    }
    OwnedProblem {
        score,
        targets,
        slots,
        has_null,
    }
}

fn random_check(dev: &CudaDevice) -> Result<Vec<CheckResult>> {
    let params = OtParams::default();
    let mut ws = SinkhornWorkspace::default();
    let mut rows = Vec::new();
    // The benchmark's shapes, then the largest supported one with and without the null row.
    rows.extend(run_case(
        dev,
        &mut ws,
        "sinkhorn 2000 of 11x10",
        &bench_problems(7, 2000, 11, 10),
        &params,
    )?);
    rows.extend(run_case(
        dev,
        &mut ws,
        "sinkhorn 500 of 21x20",
        &bench_problems(8, 500, 21, 20),
        &params,
    )?);
    let mut rng = Rng::new(11);
    let big: Vec<OwnedProblem> = (0..12)
        .map(|k| {
            let real = if k % 3 == 0 { 64 } else { rng.below(64) };
            random_owned(&mut rng, real, 64)
        })
        .collect();
    rows.extend(run_case(
        dev,
        &mut ws,
        "sinkhorn 12 of 64x64",
        &big,
        &params,
    )?);
    // Every size in one launch, in random order: blocks of mixed problems, lone large ones, and
    // 1 x 1 with and without the null row.
    let mut mixed: Vec<OwnedProblem> = (0..300)
        .map(|_| {
            let slots = 1 + rng.below(64);
            let real = rng.below(slots + 1);
            random_owned(&mut rng, real, slots)
        })
        .collect();
    mixed.insert(17, random_owned(&mut rng, 0, 1));
    mixed.insert(42, random_owned(&mut rng, 1, 1));
    mixed.push(random_owned(&mut rng, 63, 64));
    rows.extend(run_case(
        dev,
        &mut ws,
        "sinkhorn 303 mixed 1..64",
        &mixed,
        &params,
    )?);
    // A workspace that saw 64 x 64 then a smaller batch (stale sizes must not matter), and other
    // parameters.
    let other = OtParams {
        tau: 1.0,
        top_k: 2,
        eps: 1e-2,
        iters: 50,
    };
    rows.extend(run_case(
        dev,
        &mut ws,
        "sinkhorn 300 of 11x10 tau 1 k 2 eps 1e-2",
        &bench_problems(9, 300, 11, 10),
        &other,
    )?);
    Ok(rows)
}

fn edge_check(dev: &CudaDevice) -> Result<Vec<CheckResult>> {
    let params = OtParams::default();
    let mut ws = SinkhornWorkspace::default();
    let owned = |score: Vec<f64>, targets, slots, has_null| OwnedProblem {
        score,
        targets,
        slots,
        has_null,
    };
    let mut cases = vec![
        // Two equal rows, equal slack: the lower index gives back first (supply 1, 2, 0).
        owned(
            vec![1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1e-30, 1e-30, 1e-30],
            3,
            3,
            true,
        ),
        // Only the null target.
        owned(vec![0.3; 10], 1, 10, true),
        // One slot, one target, score 0.
        owned(vec![0.0], 1, 1, false),
        owned(vec![0.0], 1, 1, true),
        // One target and the null.
        owned(vec![1.9, 0.1, 0.1, 0.1, 0.1, 0.5, 0.5, 0.5], 2, 4, true),
        // An all-zero slot (uniform) and an all-zero real row (supply 0).
        owned(
            vec![
                0.0, 0.4, 0.1, 0.0, //
                0.0, 0.0, 0.0, 0.0, //
                0.0, 0.2, 0.9, 0.3,
            ],
            3,
            4,
            true,
        ),
        // Identical rows without a null: ties in the plan go to the lower target.
        owned(vec![0.5; 16], 4, 4, false),
        // Every score zero.
        owned(vec![0.0; 30], 3, 10, true),
    ];
    // Overflowing supplies: the fix-up cycles (tests/assign.rs's random ones).
    let mut rng = Rng::new(0xF1C5_0003);
    for _ in 0..200 {
        let real = 3 + rng.below(7);
        let slots = 10;
        let mut score: Vec<f64> = (0..(real + 1) * slots)
            .map(|_| 1e-12 * rng.uniform().abs() as f64)
            .collect();
        for i in 0..real {
            for _ in 0..1 + rng.below(3) {
                score[i * slots + rng.below(slots)] = 1.0 + rng.uniform().abs() as f64;
            }
        }
        cases.push(owned(score, real + 1, slots, true));
    }
    run_case(dev, &mut ws, "sinkhorn edge cases", &cases, &params)
}

/// Dists::prob (src/autodiff/dists.rs) on host arrays, f32 as the trainer computes it.
struct HostDists {
    vocab: usize,
    probs: Vec<f32>,   // [rows, vocab]
    p_gen: Vec<f32>,   // [rows]
    head0: Vec<f32>,   // [sum of lengths]
    src_ext: Vec<u32>, // [tokens]
    rows: Vec<CopyRow>,
}

impl HostDists {
    fn prob(&self, row: usize, id: u32) -> f32 {
        let c = self.rows[row];
        let mass = copy_mass(
            &self.head0[c.head0_at..c.head0_at + c.len],
            &self.src_ext[c.src_at..c.src_at + c.len],
            id,
        );
        let pv = if (id as usize) < self.vocab {
            self.probs[row * self.vocab + id as usize]
        } else {
            0.0
        };
        let pg = self.p_gen[row];
        pg * pv + (1.0 - pg) * mass
    }
}

fn gather_check(dev: &CudaDevice) -> Result<Vec<CheckResult>> {
    const STEPS: usize = 2;
    let mut rng = Rng::new(21);
    let (docs, codes, present, vocab, oov) = (13, 20, 10, 97, 9);
    let rows = docs * codes * STEPS;
    let mut d = HostDists {
        vocab,
        probs: Vec::new(),
        p_gen: Vec::new(),
        head0: Vec::new(),
        src_ext: Vec::new(),
        rows: Vec::new(),
    };
    let mut doc_src = Vec::new();
    for _ in 0..docs {
        let len = 3 + rng.below(40);
        doc_src.push((d.src_ext.len(), len));
        // Source ids, some outside the vocabulary (copied words), some repeated.
        d.src_ext
            .extend((0..len).map(|_| rng.below(vocab + oov) as u32));
    }
    for r in 0..rows {
        let (src_at, len) = doc_src[r / (codes * STEPS)];
        let mut p: Vec<f32> = (0..vocab).map(|_| rng.uniform().abs().powi(6)).collect();
        let sum: f32 = p.iter().sum();
        p.iter_mut().for_each(|x| *x /= sum);
        d.probs.extend(p);
        d.p_gen.push(0.05 + 0.9 * rng.uniform().abs());
        let mut a: Vec<f32> = (0..len).map(|_| rng.uniform().abs() + 1e-3).collect();
        let sum: f32 = a.iter().sum();
        a.iter_mut().for_each(|x| *x /= sum);
        d.rows.push(CopyRow {
            head0_at: d.head0.len(),
            src_at,
            len,
        });
        d.head0.extend(a);
    }
    // Per document and half, the targets' first two ids; the null target is <null> <pad>. The
    // ids mix in-vocabulary words, source words and copied (out-of-vocabulary) ones.
    let mut owned_ids = Vec::new();
    let mut shapes = Vec::new();
    for (doc, &(src_at, len)) in doc_src.iter().enumerate() {
        for (first, slots) in [(0, present), (present, codes - present)] {
            let real = rng.below(slots + 1);
            let has_null = real < slots;
            let targets = real + usize::from(has_null);
            let mut ids = Vec::new();
            for _ in 0..real {
                for _ in 0..STEPS {
                    ids.push(if rng.below(2) == 0 {
                        d.src_ext[src_at + rng.below(len)]
                    } else {
                        rng.below(vocab + oov) as u32
                    });
                }
            }
            if has_null {
                ids.extend([NULL_ID, PAD_ID]);
            }
            owned_ids.push(ids);
            shapes.push((targets, slots, has_null, (doc * codes + first) * STEPS));
        }
    }
    let problems: Vec<GatherProblem> = owned_ids
        .iter()
        .zip(&shapes)
        .map(
            |(ids, &(targets, slots, has_null, first_row))| GatherProblem {
                target_ids: ids,
                targets,
                slots,
                has_null,
                first_row,
            },
        )
        .collect();
    // The CPU: score_half's sum over the steps in f64 of Dists::prob, then ot_batch.
    let scores: Vec<OwnedProblem> = problems
        .iter()
        .map(|p| {
            let mut score = vec![0.0; p.targets * p.slots];
            for i in 0..p.targets {
                for j in 0..p.slots {
                    score[i * p.slots + j] = (0..STEPS)
                        .map(|k| {
                            d.prob(p.first_row + j * STEPS + k, p.target_ids[i * STEPS + k]) as f64
                        })
                        .sum();
                }
            }
            OwnedProblem {
                score,
                targets: p.targets,
                slots: p.slots,
                has_null: p.has_null,
            }
        })
        .collect();
    let params = OtParams::default();
    let views: Vec<Problem> = scores.iter().map(OwnedProblem::view).collect();
    let want = ot_batch(&views, &params)?;

    let probs = dev.upload(&d.probs, "probs")?;
    let p_gen = dev.upload(&d.p_gen, "p_gen")?;
    let head0 = dev.upload(&d.head0, "head0")?;
    let src_ext = dev.upload(&d.src_ext, "src_ext")?;
    let dists = DecoderDists {
        probs: probs.as_view(),
        p_gen: p_gen.as_view(),
        head0: head0.as_view(),
        src_ext: src_ext.as_view(),
        copy_rows: &d.rows,
        vocab,
    };
    let mut ws = SinkhornWorkspace::default();
    ws.prepare_gather(dev, &dists, &problems, STEPS)?;
    ws.poison(dev)?;
    ws.launch_gather(dev, &dists, &params)?;
    let got = ws.results(dev)?;
    let got_scores: Vec<f32> = ws.scores(dev)?.iter().map(|&x| x as f32).collect();
    let want_scores: Vec<f32> = scores
        .iter()
        .flat_map(|p| p.score.iter().map(|&x| x as f32))
        .collect();
    // The same f32 roundings in the same order: equal up to the f32 compare's own tolerance.
    let mut rows = vec![compare(
        "sinkhorn gather: scores",
        &got_scores,
        &want_scores,
        F32,
    )];
    rows.extend(compare_results("sinkhorn gather", &got, &want));
    // The one-call path on host scores agrees too.
    let again = ot_batch_cuda(dev, &views, &params, &mut ws)?;
    rows.extend(compare_results("sinkhorn ot_batch_cuda", &again, &want));
    Ok(rows)
}
