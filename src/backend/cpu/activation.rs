//! Element-wise pieces of the LLaMA block.

use rayon::prelude::*;

/// gate ← silu(gate) · up, the SwiGLU of LLaMA's MLP.
pub fn silu_mul_forward(
    gate: &mut [f32], // [rows, intermediate]
    up: &[f32],       // [rows, intermediate]
) {
    gate.par_chunks_mut(4096)
        .zip(up.par_chunks(4096))
        .for_each(|(g, u)| {
            for (g, u) in g.iter_mut().zip(u) {
                *g = *g / (1.0 + super::simd::exp_fast(-*g)) * u;
            }
        });
}

/// x ← x + delta (the residual stream).
pub fn residual_add_forward(x: &mut [f32], delta: &[f32]) {
    for (x, d) in x.iter_mut().zip(delta) {
        *x += d;
    }
}
