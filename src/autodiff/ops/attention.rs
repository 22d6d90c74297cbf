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
use crate::autodiff::Real;

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

/// A strided matrix operand: element (i, j) at `at + i·rs + j·cs` of its slice.
#[derive(Clone, Copy)]
struct View {
    at: usize,
    rs: usize,
    cs: usize,
}

impl View {
    fn row_major(at: usize, cols: usize) -> Self {
        View {
            at,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of the same storage.
    fn t(self) -> Self {
        View {
            at: self.at,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// One past the largest index an (rows × cols) walk reaches.
    fn end(&self, rows: usize, cols: usize) -> usize {
        self.at + (rows - 1) * self.rs + (cols - 1) * self.cs + 1
    }
}

/// `dst (m × n) = (acc ? dst : 0) + alpha · lhs (m × k) · rhs (k × n)` over strided views,
/// single-threaded (groups already run in parallel).
#[allow(clippy::too_many_arguments)]
fn gemm_view<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    dv: View,
    acc: bool,
    lhs: &[T],
    lv: View,
    rhs: &[T],
    rv: View,
    alpha: T,
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(
        dv.end(m, n) <= dst.len() && lv.end(m, k) <= lhs.len() && rv.end(k, n) <= rhs.len(),
        "attention gemm operand out of bounds"
    );
    // SAFETY: the assert bounds every element the strides reach for these sizes; `dst` is a
    // unique borrow, so it overlaps neither input.
    unsafe {
        gemm::gemm::<T>(
            m,
            n,
            k,
            dst.as_mut_ptr().add(dv.at),
            dv.cs as isize,
            dv.rs as isize,
            acc,
            lhs.as_ptr().add(lv.at),
            lv.cs as isize,
            lv.rs as isize,
            rhs.as_ptr().add(rv.at),
            rv.cs as isize,
            rv.rs as isize,
            T::one(),
            alpha,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// `ctx = softmax(q·kᵀ/sqrt(hd)) · mask · v` per head; keeps the (undropped) probabilities.
/// One group and head is three small GEMMs: scores, softmax in place, probabilities times values.
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
            let (ql, kl) = (g.q_len, g.k_len);
            let mut dropped = vec![T::zero(); ql * kl]; // [q_len, k_len] one head's P·mask
            for h in 0..heads {
                // Scores into the probability rows of head h: [q_len, k_len], row stride heads·k_len.
                let pv = View {
                    at: h * kl,
                    rs: heads * kl,
                    cs: 1,
                };
                let qv = View::row_major(g.q_start * d + h * hd, d);
                let kv = View::row_major(g.k_start * d + h * hd, d);
                gemm_view(ql, kl, hd, p, pv, false, q, qv, k, kv.t(), scale);
                for i in 0..ql {
                    let at = (i * heads + h) * kl;
                    let row = &mut p[at..at + kl];
                    let n = keys_seen(g, i);
                    let max = row[..n].iter().fold(T::neg_infinity(), |m, &s| m.max(s));
                    let mut sum = T::zero();
                    row[..n].iter_mut().for_each(|s| {
                        *s = (*s - max).exp();
                        sum += *s;
                    });
                    row[..n].iter_mut().for_each(|s| *s /= sum);
                    row[n..].fill(T::zero());
                    for (j, o) in dropped[i * kl..(i + 1) * kl].iter_mut().enumerate() {
                        *o = row[j] * mask.scale::<T>(base + at + j);
                    }
                }
                let cv = View::row_major(h * hd, d);
                let vv = View::row_major(g.k_start * d + h * hd, d);
                let dv = View::row_major(0, kl);
                gemm_view(ql, hd, kl, ctx, cv, false, &dropped, dv, v, vv, T::one());
            }
        });
}

/// Gradients of [`attention_forward`]: sets `dq`, `dk`, `dv` from `dctx`, plus `dhead0`, the
/// gradient of the dropped head-0 probabilities where the copy mechanism read them
/// (`[layout.num_head0()]`). With P the probabilities, M the dropout mask and S the scores:
/// dV = (P∘M)ᵀ·dC, dP = (dC·Vᵀ + dhead0)∘M, dS = P∘(dP − rowsum(P∘dP)), dQ = dS·K·scale,
/// dK = dSᵀ·Q·scale.
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
            let (ql, kl) = (g.q_len, g.k_len);
            let mut dropped = vec![T::zero(); ql * kl]; // [q_len, k_len] P·mask
            let mut ds = vec![T::zero(); ql * kl]; // [q_len, k_len] dP·mask, then dS
            let sq = View::row_major(0, kl);
            for h in 0..heads {
                for i in 0..ql {
                    let at = (i * heads + h) * kl;
                    for j in 0..kl {
                        dropped[i * kl + j] = probs[base + at + j] * mask.scale::<T>(base + at + j);
                    }
                }
                let dcv = View::row_major(g.q_start * d + h * hd, d);
                let vv = View::row_major(g.k_start * d + h * hd, d);
                let hv = View::row_major(h * hd, d);
                // dV_h = (P∘M)ᵀ · dC_h
                gemm_view(
                    kl,
                    hd,
                    ql,
                    dv,
                    hv,
                    false,
                    &dropped,
                    sq.t(),
                    dctx,
                    dcv,
                    T::one(),
                );
                // dP∘M: (dC_h · V_hᵀ + dhead0) ∘ M
                gemm_view(
                    ql,
                    kl,
                    hd,
                    &mut ds,
                    sq,
                    false,
                    dctx,
                    dcv,
                    v,
                    vv.t(),
                    T::one(),
                );
                for i in 0..ql {
                    let at = (i * heads + h) * kl;
                    let row = &mut ds[i * kl..(i + 1) * kl];
                    if let (0, Some(dh0)) = (h, dhead0) {
                        let o = layout.head0_at[gi] + i * kl;
                        row.iter_mut()
                            .zip(&dh0[o..o + kl])
                            .for_each(|(x, &y)| *x += y);
                    }
                    let p = &probs[base + at..base + at + kl];
                    let mut pd = T::zero();
                    for (j, x) in row.iter_mut().enumerate() {
                        *x *= mask.scale::<T>(base + at + j);
                        pd += p[j] * *x;
                    }
                    row.iter_mut()
                        .zip(p)
                        .for_each(|(x, &pj)| *x = pj * (*x - pd));
                }
                let qv = View::row_major(g.q_start * d + h * hd, d);
                let kv = View::row_major(g.k_start * d + h * hd, d);
                // dQ_h = dS · K_h · scale; dK_h = dSᵀ · Q_h · scale
                gemm_view(ql, hd, kl, dq, hv, false, &ds, sq, k, kv, scale);
                gemm_view(kl, hd, ql, dk, hv, false, &ds, sq.t(), q, qv, scale);
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
