//! The pieces of a LLaMA block that the selector's training differentiates through, each with its
//! backward pass, generic over [`Real`] (f32 to train, f64 for finite-difference checks). They
//! compute what `backend::cpu` computes for inference (RMSNorm in the input's precision, RoPE
//! angles in f32 as transformers takes them), so that the training forward pass equals the engine's.

use crate::autodiff::ops::matmul::matmul;
use crate::autodiff::Real;

/// `out = w ⊙ x / sqrt(mean(x²) + eps)` per row; keeps `1/sqrt(mean(x²) + eps)` per row for the
/// backward pass.
pub fn rmsnorm_forward<T: Real>(
    out: &mut [T], // [rows, dim]
    inv: &mut [T], // [rows]
    x: &[T],       // [rows, dim]
    w: &[T],       // [dim]
    eps: f64,
) {
    let dim = w.len();
    for ((o, xr), r) in out.chunks_mut(dim).zip(x.chunks(dim)).zip(inv.iter_mut()) {
        let mean_sq = T::dot(xr, xr) / T::of(dim as f64);
        *r = T::one() / (mean_sq + T::of(eps)).sqrt();
        for ((o, &v), &wi) in o.iter_mut().zip(xr).zip(w) {
            *o = wi * (v * *r);
        }
    }
}

/// Adds to `dx` the gradient through [`rmsnorm_forward`] (the weight is frozen):
/// `dx = r·(w⊙dh) − x·r³/dim·Σ(w⊙dh⊙x)`.
pub fn rmsnorm_backward<T: Real>(
    dx: &mut [T], // [rows, dim] accumulated
    dh: &[T],     // [rows, dim]
    x: &[T],      // [rows, dim]
    inv: &[T],    // [rows]
    w: &[T],      // [dim]
) {
    let dim = w.len();
    let mut g = vec![T::zero(); dim];
    for (((dxr, dhr), xr), &r) in dx
        .chunks_mut(dim)
        .zip(dh.chunks(dim))
        .zip(x.chunks(dim))
        .zip(inv)
    {
        for ((gi, &d), &wi) in g.iter_mut().zip(dhr).zip(w) {
            *gi = d * wi;
        }
        let coef = T::dot(&g, xr) * r * r * r / T::of(dim as f64);
        for ((o, &gi), &xi) in dxr.iter_mut().zip(&g).zip(xr) {
            *o += r * gi - xi * coef;
        }
    }
}

/// cos and sin of every (position, frequency) of a sequence starting at position 0, with the
/// angles in f32 as inference takes them.
pub struct RopeAngles<T> {
    half: usize,
    cos_sin: Vec<(T, T)>, // [tokens, head_dim / 2]
}

impl<T: Real> RopeAngles<T> {
    pub fn new(inv_freq: &[f32], tokens: usize) -> Self {
        let mut cos_sin = Vec::with_capacity(tokens * inv_freq.len());
        for pos in 0..tokens {
            for f in inv_freq {
                let angle = f * pos as f32;
                cos_sin.push((T::of(angle.cos() as f64), T::of(angle.sin() as f64)));
            }
        }
        RopeAngles {
            half: inv_freq.len(),
            cos_sin,
        }
    }

    /// Rotates each head's (i, i + half) pairs forward (`inverse` false) or back (the backward
    /// pass of a rotation is its transpose, the rotation by the opposite angle).
    pub fn rotate(&self, x: &mut [T] /* [tokens, heads, head_dim] */, inverse: bool) {
        let head_dim = 2 * self.half;
        let tokens = self.cos_sin.len() / self.half.max(1);
        let row = x.len() / tokens.max(1);
        for (t, token) in x.chunks_mut(row).enumerate() {
            let angles = &self.cos_sin[t * self.half..(t + 1) * self.half];
            for head in token.chunks_mut(head_dim) {
                let (lo, hi) = head.split_at_mut(self.half);
                for ((a, b), &(c, s)) in lo.iter_mut().zip(hi.iter_mut()).zip(angles) {
                    let s = if inverse { -s } else { s };
                    let (x1, x2) = (*a, *b);
                    *a = x1 * c - x2 * s;
                    *b = x2 * c + x1 * s;
                }
            }
        }
    }
}

fn sigmoid<T: Real>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

/// `act = silu(gate) ⊙ up`.
pub fn silu_mul_forward<T: Real>(act: &mut [T], gate: &[T], up: &[T]) {
    for ((a, &g), &u) in act.iter_mut().zip(gate).zip(up) {
        *a = g * sigmoid(g) * u;
    }
}

/// The gradients at `gate` and `up` of [`silu_mul_forward`]; `silu'(g) = σ(g)·(1 + g·(1 − σ(g)))`.
pub fn silu_mul_backward<T: Real>(
    d_gate: &mut [T], // [n]
    d_up: &mut [T],   // [n]
    d_act: &[T],      // [n]
    gate: &[T],       // [n]
    up: &[T],         // [n]
) {
    for i in 0..d_act.len() {
        let (g, u, d) = (gate[i], up[i], d_act[i]);
        let s = sigmoid(g);
        d_up[i] = d * g * s;
        d_gate[i] = d * u * s * (T::one() + g * (T::one() - s));
    }
}

/// The shape of a causal self-attention with grouped KV heads.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    pub tokens: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl AttentionShape {
    fn group(&self) -> usize {
        self.heads / self.kv_heads.max(1)
    }
}

/// Copies head `h` of `x` ([tokens, heads·head_dim]) into `out` ([tokens, head_dim]).
fn gather_head<T: Real>(out: &mut [T], x: &[T], h: usize, heads: usize, hd: usize) {
    for (o, row) in out.chunks_mut(hd).zip(x.chunks(heads * hd)) {
        o.copy_from_slice(&row[h * hd..(h + 1) * hd]);
    }
}

/// Adds `src` ([tokens, head_dim]) into head `h` of `x` ([tokens, heads·head_dim]).
fn scatter_add_head<T: Real>(x: &mut [T], src: &[T], h: usize, heads: usize, hd: usize) {
    for (row, s) in x.chunks_mut(heads * hd).zip(src.chunks(hd)) {
        row[h * hd..(h + 1) * hd]
            .iter_mut()
            .zip(s)
            .for_each(|(o, &v)| *o += v);
    }
}

/// Causal attention of every query head over its KV head: `P = softmax(q·kᵀ/√d)` with future
/// positions masked, `out = P·v`. Keeps P for the backward pass.
pub fn attention_forward<T: Real>(
    out: &mut [T],   // [tokens, heads·head_dim]
    probs: &mut [T], // [heads, tokens, tokens]
    q: &[T],         // [tokens, heads·head_dim]
    k: &[T],         // [tokens, kv_heads·head_dim]
    v: &[T],         // [tokens, kv_heads·head_dim]
    s: AttentionShape,
) {
    let (n, hd) = (s.tokens, s.head_dim);
    let scale = T::one() / T::of(hd as f64).sqrt();
    let mut qh = vec![T::zero(); n * hd];
    let mut kh = vec![T::zero(); n * hd];
    let mut vh = vec![T::zero(); n * hd];
    let mut oh = vec![T::zero(); n * hd];
    out.fill(T::zero());
    for h in 0..s.heads {
        let g = h / s.group();
        gather_head(&mut qh, q, h, s.heads, hd);
        gather_head(&mut kh, k, g, s.kv_heads, hd);
        gather_head(&mut vh, v, g, s.kv_heads, hd);
        let p = &mut probs[h * n * n..(h + 1) * n * n];
        matmul(p, &qh, &kh, n, n, hd, false, true, false);
        for (i, row) in p.chunks_mut(n).enumerate() {
            let max = row[..=i]
                .iter()
                .fold(T::neg_infinity(), |m, &x| m.max(x * scale));
            let mut sum = T::zero();
            for x in &mut row[..=i] {
                *x = (*x * scale - max).exp();
                sum += *x;
            }
            for x in &mut row[..=i] {
                *x /= sum;
            }
            row[i + 1..].fill(T::zero());
        }
        matmul(&mut oh, p, &vh, n, hd, n, false, false, false);
        scatter_add_head(out, &oh, h, s.heads, hd);
    }
}

/// The gradients at q, k and v (set, not added) of [`attention_forward`].
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<T: Real>(
    dq: &mut [T], // [tokens, heads·head_dim]
    dk: &mut [T], // [tokens, kv_heads·head_dim]
    dv: &mut [T], // [tokens, kv_heads·head_dim]
    d_out: &[T],  // [tokens, heads·head_dim]
    probs: &[T],  // [heads, tokens, tokens]
    q: &[T],      // [tokens, heads·head_dim]
    k: &[T],      // [tokens, kv_heads·head_dim]
    v: &[T],      // [tokens, kv_heads·head_dim]
    s: AttentionShape,
) {
    let (n, hd) = (s.tokens, s.head_dim);
    let scale = T::one() / T::of(hd as f64).sqrt();
    let buf = || vec![T::zero(); n * hd];
    let (mut qh, mut kh, mut vh, mut doh) = (buf(), buf(), buf(), buf());
    let (mut dqh, mut dkh, mut dvh) = (buf(), buf(), buf());
    let mut dp = vec![T::zero(); n * n];
    dq.fill(T::zero());
    dk.fill(T::zero());
    dv.fill(T::zero());
    for h in 0..s.heads {
        let g = h / s.group();
        gather_head(&mut qh, q, h, s.heads, hd);
        gather_head(&mut kh, k, g, s.kv_heads, hd);
        gather_head(&mut vh, v, g, s.kv_heads, hd);
        gather_head(&mut doh, d_out, h, s.heads, hd);
        let p = &probs[h * n * n..(h + 1) * n * n];
        // dv = Pᵀ·dO; dP = dO·vᵀ; dS = P ⊙ (dP − rowsum(P ⊙ dP)), then scaled.
        matmul(&mut dvh, p, &doh, n, hd, n, true, false, false);
        matmul(&mut dp, &doh, &vh, n, n, hd, false, true, false);
        for (i, (dpr, pr)) in dp.chunks_mut(n).zip(p.chunks(n)).enumerate() {
            let dot = T::dot(&dpr[..=i], &pr[..=i]);
            for (d, &pv) in dpr[..=i].iter_mut().zip(&pr[..=i]) {
                *d = pv * (*d - dot) * scale;
            }
            dpr[i + 1..].fill(T::zero());
        }
        matmul(&mut dqh, &dp, &kh, n, hd, n, false, false, false);
        matmul(&mut dkh, &dp, &qh, n, hd, n, true, false, false);
        scatter_add_head(dq, &dqh, h, s.heads, hd);
        scatter_add_head(dk, &dkh, g, s.kv_heads, hd);
        scatter_add_head(dv, &dvh, g, s.kv_heads, hd);
    }
}

/// Cross-entropy of each row's logits against its target, weighted: returns `Σ w·(lse − logit[t])`
/// and overwrites the logits with its gradient `w·(softmax − onehot)`.
pub fn weighted_cross_entropy<T: Real>(
    logits: &mut [T], // [rows, vocab] → gradient
    targets: &[u32],  // [rows]
    weights: &[T],    // [rows]
) -> T {
    let vocab = logits.len() / targets.len().max(1);
    let mut loss = T::zero();
    for ((row, &t), &w) in logits.chunks_mut(vocab).zip(targets).zip(weights) {
        let max = row.iter().fold(T::neg_infinity(), |m, &x| m.max(x));
        let sum: T = row.iter().map(|&x| (x - max).exp()).sum();
        let lse = max + sum.ln();
        loss += w * (lse - row[t as usize]);
        for x in row.iter_mut() {
            *x = w * (*x - lse).exp();
        }
        row[t as usize] -= w;
    }
    loss
}
