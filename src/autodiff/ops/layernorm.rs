//! `nn.LayerNorm` over the last dimension (biased variance, as PyTorch), keeping each row's mean
//! and 1/std for the backward pass.

use crate::autodiff::Real;

#[allow(clippy::too_many_arguments)]
pub fn layernorm_forward<T: Real>(
    y: &mut [T],    // [rows, d]
    mean: &mut [T], // [rows]
    rstd: &mut [T], // [rows]
    x: &[T],        // [rows, d]
    g: &[T],        // [d]
    b: &[T],        // [d]
    eps: f64,
) {
    let d = g.len();
    for (r, (yr, xr)) in y.chunks_mut(d).zip(x.chunks(d)).enumerate() {
        let n = T::of(d as f64);
        let m = xr.iter().copied().sum::<T>() / n;
        let var = xr.iter().map(|&v| (v - m) * (v - m)).sum::<T>() / n;
        let s = T::one() / (var + T::of(eps)).sqrt();
        for i in 0..d {
            yr[i] = (xr[i] - m) * s * g[i] + b[i];
        }
        mean[r] = m;
        rstd[r] = s;
    }
}

/// Adds the input gradient to `dx` (the residual stream's gradient flows through both the skip
/// connection and the norm) and accumulates `dg`, `db`.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward<T: Real>(
    dx: &mut [T], // [rows, d]
    dg: &mut [T], // [d]
    db: &mut [T], // [d]
    dy: &[T],     // [rows, d]
    x: &[T],      // [rows, d]
    mean: &[T],   // [rows]
    rstd: &[T],   // [rows]
    g: &[T],      // [d]
) {
    let d = g.len();
    let n = T::of(d as f64);
    for (r, (dxr, (dyr, xr))) in dx
        .chunks_mut(d)
        .zip(dy.chunks(d).zip(x.chunks(d)))
        .enumerate()
    {
        let (m, s) = (mean[r], rstd[r]);
        // dxhat = dy·g; dx = s·(dxhat − mean(dxhat) − xhat·mean(dxhat·xhat)).
        let (mut sum, mut sum_x) = (T::zero(), T::zero());
        for i in 0..d {
            let xhat = (xr[i] - m) * s;
            let dxhat = dyr[i] * g[i];
            sum += dxhat;
            sum_x += dxhat * xhat;
            dg[i] += dyr[i] * xhat;
            db[i] += dyr[i];
        }
        let (mean_d, mean_dx) = (sum / n, sum_x / n);
        for i in 0..d {
            let xhat = (xr[i] - m) * s;
            dxr[i] += s * (dyr[i] * g[i] - mean_d - xhat * mean_dx);
        }
    }
}
