//! Multi-head attention over packed sequences (no padding): queries and keys come in groups, each
//! a block of consecutive query rows attending to a block of consecutive key rows, which is how
//! the three attentions of One2Set mask their keys:
//! - encoder self-attention: one group per document (its tokens see its tokens);
//! - decoder self-attention: one causal group per slot (step t sees its slot's steps 0..=t, the
//!   authors' block-diagonal `_get_self_attn_mask`);
//! - cross-attention: one group per document (all its slots' rows see its source tokens).
//!
//! Scores are `q·k / sqrt(head_dim)`; dropout acts on the probabilities (`multi_head_attn.py`
//! drops `attn_weights` after the softmax, and returns the dropped weights, which the copy
//! mechanism reads). Groups run in parallel; key blocks of different groups must not overlap, so
//! that each group owns its rows of `dk` and `dv`.

use rayon::prelude::*;

use super::dropout::Mask;
use crate::train::Real;

/// Query rows `q_start..q_start + q_len` attend to key rows `k_start..k_start + k_len`; with
/// `causal` (then `q_len == k_len`), query `i` sees only keys `0..=i` of the block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Group {
    pub q_start: usize,
    pub q_len: usize,
    pub k_start: usize,
    pub k_len: usize,
    pub causal: bool,
}

/// The groups of one attention with where each keeps its probabilities: group `g` stores
/// `[q_len, heads, k_len]` at `prob_at[g]` (causal entries past the diagonal are 0), and its
/// head-0 probabilities `[q_len, k_len]` at `head0_at[g]` of a head-0 buffer.
#[derive(Debug, Clone, Default)]
pub struct AttnLayout {
    pub groups: Vec<Group>,
    pub prob_at: Vec<usize>,  // [groups + 1]
    pub head0_at: Vec<usize>, // [groups + 1]
}

impl AttnLayout {
    pub fn new(groups: Vec<Group>, heads: usize) -> Self {
        let (mut prob_at, mut head0_at) = (vec![0], vec![0]);
        for (g, w) in groups.iter().zip(groups.iter().skip(1)) {
            assert!(w.q_start >= g.q_start + g.q_len, "query blocks ascend");
            assert!(
                w.k_start >= g.k_start + g.k_len,
                "key blocks ascend, disjoint"
            );
        }
        for g in &groups {
            assert!(!g.causal || g.q_len == g.k_len, "a causal block is square");
            prob_at.push(prob_at.last().unwrap() + g.q_len * heads * g.k_len);
            head0_at.push(head0_at.last().unwrap() + g.q_len * g.k_len);
        }
        AttnLayout {
            groups,
            prob_at,
            head0_at,
        }
    }

    pub fn num_probs(&self) -> usize {
        *self.prob_at.last().unwrap()
    }

    pub fn num_head0(&self) -> usize {
        *self.head0_at.last().unwrap()
    }
}

/// Disjoint ascending `(start, len)` ranges of `buf` as separate mutable slices.
fn split_ranges<T>(
    mut buf: &mut [T],
    ranges: impl Iterator<Item = (usize, usize)>,
) -> Vec<&mut [T]> {
    let (mut out, mut at) = (Vec::new(), 0);
    for (start, len) in ranges {
        let rest = std::mem::take(&mut buf);
        let (_, rest) = rest.split_at_mut(start - at);
        let (mine, rest) = rest.split_at_mut(len);
        out.push(mine);
        buf = rest;
        at = start + len;
    }
    out
}

fn keys_seen(g: &Group, i: usize) -> usize {
    if g.causal {
        i + 1
    } else {
        g.k_len
    }
}

/// `ctx = softmax(q·kᵀ/sqrt(hd)) · mask · v` per head; keeps the (undropped) probabilities.
#[allow(clippy::too_many_arguments)]
pub fn attention_forward<T: Real>(
    ctx: &mut [T],   // [queries, d]
    probs: &mut [T], // [layout.num_probs()]
    q: &[T],         // [queries, d]
    k: &[T],         // [keys, d]
    v: &[T],         // [keys, d]
    layout: &AttnLayout,
    heads: usize,
    d: usize,
    mask: Mask,
) {
    let hd = d / heads;
    let scale = T::of(1.0 / (hd as f64).sqrt());
    let gs = &layout.groups;
    let ctxs = split_ranges(ctx, gs.iter().map(|g| (g.q_start * d, g.q_len * d)));
    let ps = split_ranges(
        probs,
        layout.prob_at.windows(2).map(|w| (w[0], w[1] - w[0])),
    );
    ctxs.into_par_iter()
        .zip(ps)
        .enumerate()
        .for_each(|(gi, (ctx, p))| {
            let g = &gs[gi];
            let base = layout.prob_at[gi];
            p.fill(T::zero());
            ctx.fill(T::zero());
            for i in 0..g.q_len {
                let qr = &q[(g.q_start + i) * d..(g.q_start + i + 1) * d];
                for h in 0..heads {
                    let qh = &qr[h * hd..(h + 1) * hd];
                    let at = (i * heads + h) * g.k_len;
                    let row = &mut p[at..at + keys_seen(g, i)];
                    for (j, s) in row.iter_mut().enumerate() {
                        let kr = (g.k_start + j) * d + h * hd;
                        *s = T::dot(qh, &k[kr..kr + hd]) * scale;
                    }
                    let max = row.iter().fold(T::neg_infinity(), |m, &s| m.max(s));
                    let mut sum = T::zero();
                    row.iter_mut().for_each(|s| {
                        *s = (*s - max).exp();
                        sum += *s;
                    });
                    row.iter_mut().for_each(|s| *s /= sum);
                    let out = &mut ctx[i * d + h * hd..i * d + (h + 1) * hd];
                    for (j, &pj) in row.iter().enumerate() {
                        let w = pj * mask.scale::<T>(base + at + j);
                        let vr = (g.k_start + j) * d + h * hd;
                        T::axpy(out, w, &v[vr..vr + hd]);
                    }
                }
            }
        });
}

/// Gradients of [`attention_forward`]: sets `dq`, `dk`, `dv` from `dctx`, plus `dhead0`, the
/// gradient of the dropped head-0 probabilities where the copy mechanism read them
/// (`[layout.num_head0()]`).
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<T: Real>(
    dq: &mut [T], // [queries, d]
    dk: &mut [T], // [keys, d]
    dv: &mut [T], // [keys, d]
    dctx: &[T],   // [queries, d]
    q: &[T],      // [queries, d]
    k: &[T],      // [keys, d]
    v: &[T],      // [keys, d]
    probs: &[T],  // [layout.num_probs()]
    layout: &AttnLayout,
    heads: usize,
    d: usize,
    mask: Mask,
    dhead0: Option<&[T]>, // [layout.num_head0()]
) {
    let hd = d / heads;
    let scale = T::of(1.0 / (hd as f64).sqrt());
    dq.fill(T::zero());
    dk.fill(T::zero());
    dv.fill(T::zero());
    let gs = &layout.groups;
    let dqs = split_ranges(dq, gs.iter().map(|g| (g.q_start * d, g.q_len * d)));
    let dks = split_ranges(dk, gs.iter().map(|g| (g.k_start * d, g.k_len * d)));
    let dvs = split_ranges(dv, gs.iter().map(|g| (g.k_start * d, g.k_len * d)));
    dqs.into_par_iter()
        .zip(dks)
        .zip(dvs)
        .enumerate()
        .for_each(|(gi, ((dq, dk), dv))| {
            let g = &gs[gi];
            let base = layout.prob_at[gi];
            let mut dp = vec![T::zero(); g.k_len]; // [k_len] one row's probability gradient
            for i in 0..g.q_len {
                let qr = &q[(g.q_start + i) * d..(g.q_start + i + 1) * d];
                let dcr = &dctx[(g.q_start + i) * d..(g.q_start + i + 1) * d];
                for h in 0..heads {
                    let at = (i * heads + h) * g.k_len;
                    let n = keys_seen(g, i);
                    let p = &probs[base + at..base + at + n];
                    let dch = &dcr[h * hd..(h + 1) * hd];
                    for j in 0..n {
                        let m = mask.scale::<T>(base + at + j);
                        let vr = (g.k_start + j) * d + h * hd;
                        let mut dpj = T::dot(dch, &v[vr..vr + hd]);
                        if let (0, Some(dh0)) = (h, dhead0) {
                            dpj += dh0[layout.head0_at[gi] + i * g.k_len + j];
                        }
                        dp[j] = dpj * m;
                        let w = p[j] * m;
                        T::axpy(&mut dv[j * d + h * hd..j * d + (h + 1) * hd], w, dch);
                    }
                    let pd = T::dot(p, &dp[..n]);
                    let qh = &qr[h * hd..(h + 1) * hd];
                    let dqh = &mut dq[i * d + h * hd..i * d + (h + 1) * hd];
                    for j in 0..n {
                        let ds = p[j] * (dp[j] - pd) * scale;
                        let kr = (g.k_start + j) * d + h * hd;
                        T::axpy(dqh, ds, &k[kr..kr + hd]);
                        T::axpy(&mut dk[j * d + h * hd..j * d + (h + 1) * hd], ds, qh);
                    }
                }
            }
        });
}

/// The dropped head-0 probabilities `[layout.num_head0()]` (what the copy mechanism reads).
pub fn head0_forward<T: Real>(
    out: &mut [T],
    probs: &[T], // [layout.num_probs()]
    layout: &AttnLayout,
    heads: usize,
    mask: Mask,
) {
    for (gi, g) in layout.groups.iter().enumerate() {
        for i in 0..g.q_len {
            let at = layout.prob_at[gi] + i * heads * g.k_len;
            let o = layout.head0_at[gi] + i * g.k_len;
            for j in 0..g.k_len {
                out[o + j] = probs[at + j] * mask.scale::<T>(at + j);
            }
        }
    }
}
