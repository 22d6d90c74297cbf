//! LayerNorm as PyTorch's `nn.LayerNorm` computes it: (x - mean) / sqrt(var + eps) · weight + bias,
//! with the biased variance, in f32 (the One2Set generator's pre-norm blocks; Vaswani et al. 2017,
//! in the pre-LN arrangement of jiacheng-ye/kg_one2set).

use rayon::prelude::*;

/// Rows per parallel task: a decode step normalises a few hundred short rows.
const ROWS_PER_TASK: usize = 16;

/// out[r] = layernorm(x[r]) for every row.
pub fn layernorm_forward(
    out: &mut [f32], // [rows, dim]
    x: &[f32],       // [rows, dim]
    weight: &[f32],  // [dim]
    bias: &[f32],    // [dim]
    eps: f32,
) {
    let dim = weight.len();
    assert_eq!(bias.len(), dim, "layernorm_forward: bias is not [dim]");
    assert_eq!(
        out.len(),
        x.len(),
        "layernorm_forward: out is not [rows, dim]"
    );
    assert_eq!(
        x.len() % dim.max(1),
        0,
        "layernorm_forward: x is not [rows, dim]"
    );
    out.par_chunks_mut(ROWS_PER_TASK * dim)
        .zip(x.par_chunks(ROWS_PER_TASK * dim))
        .for_each(|(o, xs)| {
            for (o, xr) in o.chunks_mut(dim).zip(xs.chunks(dim)) {
                layernorm_row(o, xr, weight, bias, eps);
            }
        });
}

#[inline]
fn layernorm_row(o: &mut [f32], x: &[f32], weight: &[f32], bias: &[f32], eps: f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + eps).sqrt();
    for (((o, v), w), b) in o.iter_mut().zip(x).zip(weight).zip(bias) {
        *o = (v - mean) * inv * w + b;
    }
}

/// The specification: f64 statistics, one row at a time.
pub fn layernorm_reference(out: &mut [f32], x: &[f32], weight: &[f32], bias: &[f32], eps: f32) {
    let dim = weight.len();
    for (o, xr) in out.chunks_mut(dim).zip(x.chunks(dim)) {
        let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / dim as f64;
        let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / dim as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for i in 0..dim {
            o[i] = ((xr[i] as f64 - mean) * inv * weight[i] as f64 + bias[i] as f64) as f32;
        }
    }
}
