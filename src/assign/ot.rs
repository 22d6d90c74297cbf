//! Optimal-transport target assignment with dynamic supplies ("One2Set + Large Language Model:
//! Best Partners for Keyphrase Generation", EMNLP 2024), as DESIGN.md ("Training the generator")
//! fixes it and as the authors' released code computes it (DeepLearnXMU/KPG-SetLLM,
//! `OTA_One2Set/pykp/utils/label_assign.py`: `normalize_score_np`, `dynamic_k_strategy_np`,
//! `sinkhorn_iter_np`, run with `k_strategy=normal`, `null_cost_zero=false`).
//!
//! For one problem with targets i (the null target last, if any) and slots j:
//!
//! 1. Normalise: `n[i][j] = mu[i][j]^(1/tau) / sum_i' mu[i'][j]^(1/tau)` (sums in target order).
//!    A slot where every target scores exactly 0 would divide 0 by 0; it gets `1/targets` for
//!    every target, the limit of equal scores (the authors' code would produce NaN there).
//! 2. Supplies (with a null target): `raw[i]` = the sum of row i's `min(top_k, slots)` largest
//!    `n[i][j]`, added largest first; `s[i] = ceil(raw[i])` for each real target (0 when a row is all
//!    zeros, as in the authors' code); the null target gets `slots - sum(s)`. When that is
//!    negative the null target gets 0 and real targets give back one each, in order of rounding
//!    slack `s[i] - raw[i]` (largest first; equal slack: lower target index first), skipping
//!    those at 1 and cycling through the order again until the totals match, as the authors'
//!    loop does. (Their order is numpy's `argsort()[::-1]`, which leaves equal slack to the sort
//!    kernel; ours is fixed.) Without a null target every `s[i] = 1` (and targets = slots).
//! 3. Cost `c[i][j] = -n[i][j]` for every row, the null row included; demand `b[j] = 1`.
//! 4. Entropic OT by log-domain Sinkhorn ("Sinkhorn distances", Cuturi 2013, in the log-domain form
//!    of the authors' `sinkhorn_iter_np`), potentials `u = 1`, `v = 1` to start, and
//!    `M[i][j] = ((-c[i][j] + u[i]) + v[j]) / eps` (in that order of operations). Each of `iters`
//!    iterations does, v before u and u with the new v:
//!
//!    ```text
//!    v[j] += eps * (ln(b[j] + 1e-8) - logsumexp_i M[i][j])
//!    u[i] += eps * (ln(s[i] + 1e-8) - logsumexp_j M[i][j])
//!    ```
//!
//!    The 1e-8 goes into both marginals' logarithms, as in the authors' code: it keeps a zero
//!    supply (the null target after the fix-up) finite, and shifts the demand's ln 1 to 1e-8.
//!    `logsumexp(x) = max(x) + ln(sum exp(x - max(x)))`.
//! 5. Plan `P[i][j] = exp(M[i][j])` with the final potentials; slot j learns
//!    `argmax_i P[i][j]` (equal values: the lowest i).
//!
//! f64 throughout; the [`OtWorkspace`] holds every buffer, so the iterations allocate nothing.

use super::Problem;
use crate::error::{KpgError, Result};

/// The OT assignment's parameters; `Default` gives the reference values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OtParams {
    /// Temperature of the score normalisation (`mu^(1/tau)`).
    pub tau: f64,
    /// How many of a target's best slots set its supply.
    pub top_k: usize,
    /// Entropic regularisation of the Sinkhorn iterations.
    pub eps: f64,
    /// Sinkhorn iterations.
    pub iters: usize,
}

impl Default for OtParams {
    fn default() -> Self {
        OtParams {
            tau: 10.0,
            top_k: 3,
            eps: 1e-3,
            iters: 100,
        }
    }
}

impl OtParams {
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &str, why: &str| {
            Err(KpgError::InvalidArgument(format!(
                "OT parameter `{name}` {why}"
            )))
        };
        if !(self.tau.is_finite() && self.tau > 0.0) {
            return bad(
                "tau",
                &format!("must be positive and finite, got {}", self.tau),
            );
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad(
                "eps",
                &format!("must be positive and finite, got {}", self.eps),
            );
        }
        if self.top_k == 0 {
            return bad("top_k", "must be at least 1");
        }
        // Without an iteration the plan is exp((n + 2) / eps): infinite at the reference eps.
        if self.iters == 0 {
            return bad("iters", "must be at least 1");
        }
        Ok(())
    }
}

/// One problem's OT assignment.
#[derive(Debug, Clone, PartialEq)]
pub struct OtResult {
    /// Slots each target is offered (integers; the null target last).
    pub supply: Vec<f64>, // [targets]
    /// The entropic transport plan.
    pub plan: Vec<f64>, // [targets, slots]
    /// Per slot, the target it learns: `argmax_i plan[i][j]`, ties to the lowest i.
    pub assign: Vec<usize>, // [slots]
}

/// Scratch for one problem at a time; grows to the largest problem seen and is reused.
#[derive(Debug, Default)]
pub struct OtWorkspace {
    norm: Vec<f64>,    // [targets, slots] normalised scores (= -cost)
    raw: Vec<f64>,     // [targets] sum of each row's top-k normalised scores
    line: Vec<f64>,    // [max(targets, slots)] one row or column of M, or a row being sorted
    order: Vec<usize>, // [targets] real targets by rounding slack, for the fix-up
    u: Vec<f64>,       // [targets]
    v: Vec<f64>,       // [slots]
    log_a: Vec<f64>,   // [targets] ln(supply + 1e-8)
}

/// Solves one problem (checking it and `params` first; `index 0` in errors).
pub fn ot_assign(problem: &Problem, params: &OtParams, ws: &mut OtWorkspace) -> Result<OtResult> {
    params.validate()?;
    problem.validate(0)?;
    Ok(ot_solve(problem, params, ws))
}

/// [`ot_assign`] on a problem and parameters already checked.
pub(crate) fn ot_solve(p: &Problem, params: &OtParams, ws: &mut OtWorkspace) -> OtResult {
    let (t, s) = (p.targets, p.slots);
    ws.norm.resize(t * s, 0.0);
    ws.raw.resize(t, 0.0);
    ws.line.resize(t.max(s), 0.0);
    ws.order.clear();
    ws.u.resize(t, 0.0);
    ws.v.resize(s, 0.0);
    ws.log_a.resize(t, 0.0);

    normalise_scores(p.score, t, s, params.tau, &mut ws.norm);
    let mut supply = vec![0.0; t];
    supplies(p, params.top_k, ws, &mut supply);
    let mut plan = vec![0.0; t * s];
    sinkhorn_log(t, s, &supply, params.eps, params.iters, ws, &mut plan);
    let assign = (0..s)
        .map(|j| {
            let mut best = 0;
            for i in 1..t {
                if plan[i * s + j] > plan[best * s + j] {
                    best = i;
                }
            }
            best
        })
        .collect();
    OtResult {
        supply,
        plan,
        assign,
    }
}

/// `norm[i][j] = mu[i][j]^(1/tau) / sum_i' mu[i'][j]^(1/tau)`; an all-zero slot becomes uniform.
fn normalise_scores(score: &[f64], t: usize, s: usize, tau: f64, norm: &mut [f64]) {
    let power = 1.0 / tau;
    for (n, &x) in norm.iter_mut().zip(score) {
        *n = x.powf(power);
    }
    for j in 0..s {
        let mut sum = 0.0;
        for i in 0..t {
            sum += norm[i * s + j];
        }
        for i in 0..t {
            norm[i * s + j] = if sum > 0.0 {
                norm[i * s + j] / sum
            } else {
                1.0 / t as f64
            };
        }
    }
}

/// The supplies of step 2 of the module doc, written into `supply` (integer-valued).
fn supplies(p: &Problem, top_k: usize, ws: &mut OtWorkspace, supply: &mut [f64]) {
    let (t, s) = (p.targets, p.slots);
    if !p.has_null {
        supply.fill(1.0);
        return;
    }
    let k = top_k.min(s);
    for i in 0..t {
        let row = &mut ws.line[..s];
        row.copy_from_slice(&ws.norm[i * s..(i + 1) * s]);
        row.sort_unstable_by(|a, b| b.total_cmp(a));
        // Largest first, as numpy sums the authors' sorted top-k.
        let mut sum = 0.0;
        for &x in &row[..k] {
            sum += x;
        }
        ws.raw[i] = sum;
    }
    let real = t - 1;
    let mut taken: i64 = 0;
    for (s_i, raw) in supply[..real].iter_mut().zip(&ws.raw) {
        *s_i = raw.ceil();
        taken += *s_i as i64;
    }
    let mut left = s as i64 - taken;
    if left >= 0 {
        supply[real] = left as f64;
        return;
    }
    supply[real] = 0.0;
    // The loop ends: every real supply stays >= 1 only while it was, and real < slots, so some
    // supply is at least 2 while the total exceeds the slots. (A real row of zeros has supply 0
    // and is never asked.)
    ws.order.extend(0..real);
    let slack = |i: usize| supply[i] - ws.raw[i];
    ws.order
        .sort_by(|&a, &b| slack(b).total_cmp(&slack(a)).then(a.cmp(&b)));
    let mut pos = 0;
    while left < 0 {
        let i = ws.order[pos];
        if supply[i] >= 2.0 {
            supply[i] -= 1.0;
            left += 1;
        }
        pos = (pos + 1) % real;
    }
}

/// `max(x) + ln(sum exp(x - max(x)))`.
fn logsumexp(x: &[f64]) -> f64 {
    let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    let mut sum = 0.0;
    for &a in x {
        sum += (a - m).exp();
    }
    m + sum.ln()
}

/// Step 4 and 5 of the module doc: the log-domain Sinkhorn iterations on cost `-ws.norm`, then
/// the plan.
fn sinkhorn_log(
    t: usize,
    s: usize,
    supply: &[f64],
    eps: f64,
    iters: usize,
    ws: &mut OtWorkspace,
    plan: &mut [f64], // [t, s]
) {
    let OtWorkspace {
        norm,
        line,
        u,
        v,
        log_a,
        ..
    } = ws;
    // -c[i][j] is norm[i][j] exactly.
    let m = |norm: &[f64], u: &[f64], v: &[f64], i: usize, j: usize| {
        ((norm[i * s + j] + u[i]) + v[j]) / eps
    };
    u.fill(1.0);
    v.fill(1.0);
    for (la, &a) in log_a.iter_mut().zip(supply) {
        *la = (a + 1e-8).ln();
    }
    let log_b = (1.0f64 + 1e-8).ln();
    for _ in 0..iters {
        for j in 0..s {
            for (i, x) in line[..t].iter_mut().enumerate() {
                *x = m(norm, u, v, i, j);
            }
            v[j] += eps * (log_b - logsumexp(&line[..t]));
        }
        for i in 0..t {
            for (j, x) in line[..s].iter_mut().enumerate() {
                *x = m(norm, u, v, i, j);
            }
            u[i] += eps * (log_a[i] - logsumexp(&line[..s]));
        }
    }
    for i in 0..t {
        for j in 0..s {
            plan[i * s + j] = m(norm, u, v, i, j).exp();
        }
    }
}
