//! `dense_forward`: y = x · Wᵀ with W stored [out, in] (PyTorch's `nn.Linear`, no bias), for the
//! One2Set generator, whose matrix products have hundreds to thousands of rows (all slots of a
//! batch, or all source tokens of a batch) and small inner sizes (d_model 512).
//!
//! For f32 weights aligned in the memory map, the `gemm` crate reads x, W and y in place with their
//! row-major strides, the output columns split across threads, from 9 rows up: on the generator's
//! shapes (d_model 512, 20 slots per document) that measured 1.1–1.5x faster than transposing x and
//! y around the product, which [`super::linear::linear_forward`] does below its size rule tuned for
//! LLaMA. Other weights (f16, bf16, unaligned) and short batches go through `linear_forward`, which
//! widens weight tiles; both are held to `linear_reference`.

use rayon::prelude::*;

use super::gemm::{gemm_f32, Strides};

use super::convert;
use super::linear::{linear_forward, LinearScratch};
use crate::model::weights::WeightView;

/// At or below this many rows, `linear_forward`'s row-streaming path is the faster.
const DIRECT_MIN_ROWS: usize = 9;
/// Column tasks per thread.
const TASKS_PER_THREAD: usize = 2;

/// y[t, o] = sum_i x[t, i] · w[o, i].
pub fn dense_forward(
    y: &mut [f32],     // [rows, out]
    x: &[f32],         // [rows, in]
    w: WeightView<'_>, // [out, in]
    rows: usize,
    scratch: &mut LinearScratch,
) {
    let (out, inp) = w.rows_cols();
    assert_eq!(x.len(), rows * inp, "dense_forward: x is not [rows, in]");
    assert_eq!(y.len(), rows * out, "dense_forward: y is not [rows, out]");
    let wf = match convert::as_f32_slice(w.dtype, w.bytes) {
        Some(wf) if rows >= DIRECT_MIN_ROWS => wf,
        _ => return linear_forward(y, x, w, rows, scratch),
    };
    let tasks = TASKS_PER_THREAD * rayon::current_num_threads().max(1);
    let per_task = out.div_ceil(tasks).div_ceil(16) * 16;
    let y_addr = y.as_mut_ptr() as usize;
    (0..out.div_ceil(per_task))
        .into_par_iter()
        .for_each(|task| {
            let first = task * per_task;
            let n = per_task.min(out - first);
            // SAFETY: dst is y's columns first..first+n of every row: (rows × n) with row stride
            // `out` and column stride 1, inside y (length rows·out, asserted); tasks own disjoint
            // column ranges. lhs = x is (rows × inp) row-major, inside x (asserted). rhs = wᵀ for
            // weight rows first..first+n is (inp × n) with column stride inp, inside w since
            // wf.len() = out·inp. x and w are only read.
            unsafe {
                gemm_f32(
                    rows,
                    n,
                    inp,
                    (y_addr as *mut f32).add(first),
                    Strides {
                        row: out as isize,
                        col: 1,
                    },
                    x.as_ptr(),
                    Strides {
                        row: inp as isize,
                        col: 1,
                    },
                    wf.as_ptr().add(first * inp),
                    Strides {
                        row: 1,
                        col: inp as isize,
                    },
                    1.0,
                );
            }
        });
}
