//! Rotary position embeddings as transformers' LLaMA applies them: the two halves of each head
//! are rotated together (`rotate_half`), not interleaved pairs. Frequencies follow the config's
//! `rope_type` (default, linear, llama3).

use rayon::prelude::*;

use crate::model::config::{RopeConfig, RopeScaling};

/// Inverse frequencies of one head, computed once per model.
#[derive(Debug, Clone)]
pub struct RopeTable {
    inv_freq: Vec<f32>, // [head_dim / 2]
}

impl RopeTable {
    pub fn new(config: &RopeConfig, head_dim: usize) -> Self {
        let half = head_dim / 2;
        let base: Vec<f64> = (0..half)
            .map(|i| 1.0 / config.theta.powf((2 * i) as f64 / head_dim as f64))
            .collect();
        let inv_freq = match &config.scaling {
            RopeScaling::None => base,
            RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
            RopeScaling::Factors(factors) => base.iter().zip(factors).map(|(f, d)| f / d).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old_ctx,
            } => {
                // transformers' _compute_llama3_parameters.
                let low_freq_wavelen = old_ctx / low_freq_factor;
                let high_freq_wavelen = old_ctx / high_freq_factor;
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_freq_wavelen {
                            f
                        } else if wavelen > low_freq_wavelen {
                            f / factor
                        } else {
                            let smooth = (old_ctx / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        };
        RopeTable {
            inv_freq: inv_freq.into_iter().map(|f| f as f32).collect(),
        }
    }

    /// Inverse frequencies of the rotation pairs (the CUDA kernel takes the same table).
    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    pub fn head_dim(&self) -> usize {
        self.inv_freq.len() * 2
    }

    /// Rotates every head of every token in place by its token's position.
    pub fn rope_forward(
        &self,
        x: &mut [f32],     // [tokens, heads, head_dim]
        positions: &[u32], // [tokens]
    ) {
        let head_dim = self.head_dim();
        let half = head_dim / 2;
        let row = x.len() / positions.len().max(1);
        x.par_chunks_mut(row)
            .zip(positions.par_iter())
            .for_each_init(
                || vec![(0f32, 0f32); half],
                |cos_sin, (token, &pos)| {
                    // Angles in f32 as transformers computes them (inv_freq · position).
                    for (cs, f) in cos_sin.iter_mut().zip(&self.inv_freq) {
                        let angle = f * pos as f32;
                        *cs = (angle.cos(), angle.sin());
                    }
                    for head in token.chunks_mut(head_dim) {
                        let (lo, hi) = head.split_at_mut(half);
                        for ((a, b), &(c, s)) in
                            lo.iter_mut().zip(hi.iter_mut()).zip(cos_sin.iter())
                        {
                            let (x1, x2) = (*a, *b);
                            *a = x1 * c - x2 * s;
                            *b = x2 * c + x1 * s;
                        }
                    }
                },
            );
    }
}
