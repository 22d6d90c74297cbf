//! RMSNorm as in transformers' `LlamaRMSNorm`: x · rsqrt(mean(x²) + eps) · weight, in f32.

use rayon::prelude::*;

pub fn rmsnorm_forward(
    out: &mut [f32], // [rows, dim]
    x: &[f32],       // [rows, dim]
    weight: &[f32],  // [dim]
    eps: f32,
) {
    let dim = weight.len();
    out.par_chunks_mut(dim)
        .zip(x.par_chunks(dim))
        .for_each(|(o, xr)| {
            let mean_sq = xr.iter().map(|v| v * v).sum::<f32>() / dim as f32;
            let inv = 1.0 / (mean_sq + eps).sqrt();
            for ((o, v), w) in o.iter_mut().zip(xr).zip(weight) {
                *o = w * (v * inv);
            }
        });
}
