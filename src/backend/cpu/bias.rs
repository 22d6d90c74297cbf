//! Bias adds for `nn.Linear` layers with a bias (`linear_forward` computes x·Wᵀ alone), fused with
//! the ReLU of the One2Set generator's feed-forward blocks where one follows.

use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// y[r] += bias for every row.
pub fn bias_add_forward(
    y: &mut [f32], // [rows, dim]
    bias: &[f32],  // [dim]
) {
    let dim = bias.len();
    assert_eq!(
        y.len() % dim.max(1),
        0,
        "bias_add_forward: y is not [rows, dim]"
    );
    let per_task = (CHUNK / dim.max(1)).max(1) * dim;
    y.par_chunks_mut(per_task.max(1)).for_each(|rows| {
        for row in rows.chunks_mut(dim) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    });
}

/// y[r] = max(y[r] + bias, 0) for every row.
pub fn bias_relu_forward(
    y: &mut [f32], // [rows, dim]
    bias: &[f32],  // [dim]
) {
    let dim = bias.len();
    assert_eq!(
        y.len() % dim.max(1),
        0,
        "bias_relu_forward: y is not [rows, dim]"
    );
    let per_task = (CHUNK / dim.max(1)).max(1) * dim;
    y.par_chunks_mut(per_task.max(1)).for_each(|rows| {
        for row in rows.chunks_mut(dim) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v = (*v + b).max(0.0);
            }
        }
    });
}
