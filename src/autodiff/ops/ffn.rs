//! The position-wise feed-forward block `fc2(dropout(relu(fc1(h))))` (`nn.Sequential(Linear, ReLU,
//! Dropout, Linear, Dropout)` in the authors' layers; the last dropout is the caller's, on the
//! sublayer output).

use super::dropout::{dropout_forward, Mask};
use super::linear::{linear_backward, linear_forward};
use crate::autodiff::Real;

/// FFN weights: `fc1 [ffn, d]`, `fc2 [d, ffn]` with biases.
pub struct FfnWeights<'a, T> {
    pub w1: &'a [T], // [ffn, d]
    pub b1: &'a [T], // [ffn]
    pub w2: &'a [T], // [d, ffn]
    pub b2: &'a [T], // [d]
}

/// FFN weight gradients, accumulated.
pub struct FfnGrads<'a, T> {
    pub w1: &'a mut [T], // [ffn, d]
    pub b1: &'a mut [T], // [ffn]
    pub w2: &'a mut [T], // [d, ffn]
    pub b2: &'a mut [T], // [d]
}

/// `out = fc2(act)` with `act = dropout(relu(fc1(h)))` kept for the backward pass.
pub fn ffn_forward<T: Real>(
    out: &mut [T], // [rows, d]
    act: &mut [T], // [rows, ffn]
    h: &[T],       // [rows, d]
    w: &FfnWeights<T>,
    rows: usize,
    mask: Mask,
) {
    linear_forward(act, h, w.w1, Some(w.b1), rows);
    act.iter_mut().for_each(|v| *v = v.max(T::zero()));
    dropout_forward(act, mask, 0);
    linear_forward(out, act, w.w2, Some(w.b2), rows);
}

/// Sets `dh`; `dact` is scratch. A zero in `act` is a unit ReLU cut or dropout dropped, and
/// passes no gradient either way; elsewhere the gradient is scaled as the kept value was.
#[allow(clippy::too_many_arguments)]
pub fn ffn_backward<T: Real>(
    dh: &mut [T],   // [rows, d]
    dact: &mut [T], // [rows, ffn]
    g: FfnGrads<T>,
    dout: &[T], // [rows, d]
    h: &[T],    // [rows, d]
    act: &[T],  // [rows, ffn]
    w: &FfnWeights<T>,
    rows: usize,
    mask: Mask,
) {
    linear_backward(
        Some(&mut *dact),
        g.w2,
        Some(g.b2),
        dout,
        act,
        w.w2,
        rows,
        false,
    );
    for (i, (da, &a)) in dact.iter_mut().zip(act).enumerate() {
        *da = if a > T::zero() {
            *da * mask.scale::<T>(i)
        } else {
            T::zero()
        };
    }
    linear_backward(Some(dh), g.w1, Some(g.b1), dact, h, w.w1, rows, false);
}
