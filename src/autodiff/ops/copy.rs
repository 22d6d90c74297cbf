//! The pointer–generator output (See et al. 2017) and One2Set's loss: over the extended
//! vocabulary, `P(w) = p_gen·softmax(logits)[w] + (1 − p_gen)·Σ_{s: src_ext[s] = w} a[s]`, with `a`
//! the (dropped) head-0 cross-attention of the last decoder layer, and
//! `loss = −Σ_r weight_r · log(P_r(target_r) + 1e-8) / normalizer` (`masked_cross_entropy`,
//! EPS = 1e-8, with the null-target scales folded into the weights).

use rayon::prelude::*;

use crate::autodiff::Real;

/// EPS of the authors' `masked_cross_entropy`.
pub const LOSS_EPS: f64 = 1e-8;

/// Where one decoder row reads its copy attention and its document's extended source ids.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyRow {
    pub head0_at: usize,
    pub src_at: usize,
    pub len: usize,
}

/// Row-wise softmax in place.
pub fn softmax_forward<T: Real>(x: &mut [T], cols: usize) {
    x.par_chunks_mut(cols).for_each(|row| {
        let max = row.iter().fold(T::neg_infinity(), |m, &v| m.max(v));
        let mut sum = T::zero();
        row.iter_mut().for_each(|v| {
            *v = (*v - max).exp();
            sum += *v;
        });
        let inv = T::one() / sum;
        row.iter_mut().for_each(|v| *v *= inv);
    });
}

/// Copy mass of extended id `w` in one row.
pub fn copy_mass<T: Real>(head0: &[T], src_ext: &[u32], w: u32) -> T {
    head0
        .iter()
        .zip(src_ext)
        .filter(|(_, &e)| e == w)
        .fold(T::zero(), |s, (&a, _)| s + a)
}

/// The inputs of the copy mixing and the loss besides the softmax, per decoder row.
pub struct CopyInputs<'a, T> {
    pub p_gen: &'a [T], // [rows]
    pub head0: &'a [T], // [Σ rows' source lengths]
    pub rows: &'a [CopyRow],
    pub src_ext: &'a [u32], // [tokens]
    pub targets: &'a [u32], // [rows] extended ids
    pub weights: &'a [T],   // [rows]
    pub vocab: usize,
}

impl<T: Real> CopyInputs<'_, T> {
    fn copy_row(&self, r: usize) -> (&[T], &[u32]) {
        let c = self.rows[r];
        (
            &self.head0[c.head0_at..c.head0_at + c.len],
            &self.src_ext[c.src_at..c.src_at + c.len],
        )
    }

    /// softmax(logits)[target] of one row (0 for an out-of-vocabulary target).
    fn p_vocab(&self, row: &[T], r: usize) -> T {
        let t = self.targets[r] as usize;
        if t < self.vocab {
            row[t]
        } else {
            T::zero()
        }
    }
}

/// The loss; `p_target[r]` gets `P_r(target_r)`.
pub fn copy_loss_forward<T: Real>(
    probs: &[T], // [rows, vocab] softmax of the logits
    x: &CopyInputs<T>,
    normalizer: T,
    p_target: &mut [T], // [rows]
) -> T {
    let mut loss = T::zero();
    for (r, pt) in p_target.iter_mut().enumerate() {
        let sm = x.p_vocab(&probs[r * x.vocab..(r + 1) * x.vocab], r);
        let (a, ext) = x.copy_row(r);
        let pg = x.p_gen[r];
        *pt = pg * sm + (T::one() - pg) * copy_mass(a, ext, x.targets[r]);
        if x.weights[r] != T::zero() {
            loss -= x.weights[r] * (*pt + T::of(LOSS_EPS)).ln();
        }
    }
    loss / normalizer
}

/// Gradients of the loss: of the logits, written over the softmax probabilities in place (so
/// that the vocabulary-sized rows exist once per step), of p_gen's pre-sigmoid, and of the
/// head-0 probabilities. A row of weight 0 gets zero gradients.
pub fn copy_loss_backward<T: Real>(
    probs: &mut [T],  // [rows, vocab] in: softmax probabilities; out: d loss / d logits
    dz_gen: &mut [T], // [rows]
    dhead0: &mut [T], // [Σ rows' source lengths]
    x: &CopyInputs<T>,
    p_target: &[T], // [rows]
    normalizer: T,
) {
    // d loss / d P_r(target_r).
    let dp = |r: usize| -x.weights[r] / (normalizer * (p_target[r] + T::of(LOSS_EPS)));
    dhead0.fill(T::zero());
    for r in 0..x.targets.len() {
        let row = &probs[r * x.vocab..(r + 1) * x.vocab];
        if x.weights[r] == T::zero() {
            dz_gen[r] = T::zero();
            continue;
        }
        let g = dp(r);
        let pg = x.p_gen[r];
        let (a, ext) = x.copy_row(r);
        let mass = copy_mass(a, ext, x.targets[r]);
        dz_gen[r] = g * (x.p_vocab(row, r) - mass) * pg * (T::one() - pg);
        let c = x.rows[r];
        for (s, &e) in ext.iter().enumerate() {
            if e == x.targets[r] {
                dhead0[c.head0_at + s] = g * (T::one() - pg);
            }
        }
    }
    probs
        .par_chunks_mut(x.vocab)
        .enumerate()
        .for_each(|(r, row)| {
            let t = x.targets[r] as usize;
            if x.weights[r] == T::zero() || t >= x.vocab {
                row.fill(T::zero());
                return;
            }
            // d softmax_t / d logit_j = sm_t (δ_tj − sm_j).
            let c = dp(r) * x.p_gen[r] * row[t];
            row.iter_mut().for_each(|v| *v = -c * *v);
            row[t] += c;
        });
}
