//! `nn.Linear`: `y = x · Wᵀ + b` with `W` stored `[out, in]` as PyTorch stores it.

use super::matmul::matmul;
use crate::autodiff::Real;

/// `y[rows, out] = x[rows, in] · wᵀ + b`.
pub fn linear_forward<T: Real>(
    y: &mut [T],     // [rows, out]
    x: &[T],         // [rows, in]
    w: &[T],         // [out, in]
    b: Option<&[T]>, // [out]
    rows: usize,
) {
    let out = y.len() / rows.max(1);
    let inp = w.len() / out.max(1);
    matmul(y, x, w, rows, out, inp, false, true, false);
    if let Some(b) = b {
        for row in y.chunks_mut(out) {
            row.iter_mut().zip(b).for_each(|(v, &bi)| *v += bi);
        }
    }
}

/// Accumulates `dw += dyᵀ · x` and `db += Σ_rows dy`; sets (or, with `acc_dx`, adds) `dx = dy · w`.
/// Pass `dx = None` when the input needs no gradient.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward<T: Real>(
    dx: Option<&mut [T]>, // [rows, in]
    dw: &mut [T],         // [out, in]
    db: Option<&mut [T]>, // [out]
    dy: &[T],             // [rows, out]
    x: &[T],              // [rows, in]
    w: &[T],              // [out, in]
    rows: usize,
    acc_dx: bool,
) {
    let out = dy.len() / rows.max(1);
    let inp = w.len() / out.max(1);
    matmul(dw, dy, x, out, inp, rows, true, false, true);
    if let Some(db) = db {
        for row in dy.chunks(out) {
            db.iter_mut().zip(row).for_each(|(g, &v)| *g += v);
        }
    }
    if let Some(dx) = dx {
        matmul(dx, dy, w, rows, inp, out, false, false, acc_dx);
    }
}
