//! `linear_forward`: y = x · Wᵀ with W stored [out, in] as in PyTorch's `nn.Linear`, no bias.
//!
//! Two paths, both against the same reference (`linear_reference`):
//! - few rows (decode steps, label heads): each weight row is widened once and dotted with every
//!   input row, output rows split across threads, so the weights are streamed from memory once;
//! - many rows (prefill): weight tiles widened to f32 and multiplied with the `gemm` crate's
//!   AVX-512/AVX2 kernels; f32 weights that are aligned in the memory map are used in place.
//!
//! Weights in ggml blocks (a GGUF file's) take the first path in integers where `quant` has a
//! kernel for their type (activations quantized per block of 32, as ggml does), and are widened
//! like f16 otherwise; the GEMM path widens their tiles like any other dtype.

use rayon::prelude::*;

use super::gemm::{col_major, gemm_f32, row_major};
use super::{convert, quant, simd};
use crate::model::weights::{DType, WeightView};

/// At or below this many input rows, the row-streaming path beats packing for a GEMM.
const SMALL_BATCH_ROWS: usize = 8;
/// Output rows per parallel task in the row-streaming path.
const ROWS_PER_TASK: usize = 16;
/// Tasks per thread of the integer product on ggml blocks.
const QUANT_TASKS_PER_THREAD: usize = 4;
/// GEMM tasks per thread: more balance the load, fewer repack x less often.
const TASKS_PER_THREAD: usize = 2;
/// Elements of a widened weight tile in the GEMM path (16 MB of f32).
const TILE_ELEMS: usize = 4 << 20;

/// Scratch space reused across calls so that steady-state decoding does not allocate.
#[derive(Default)]
pub struct LinearScratch {
    tile: Vec<f32>,  // [tile_rows, in] widened weights
    x_t: Vec<f32>,   // [in, rows]
    out_t: Vec<f32>, // [out, rows]
}

/// y[t, o] = sum_i x[t, i] · w[o, i].
pub fn linear_forward(
    y: &mut [f32],     // [rows, out]
    x: &[f32],         // [rows, in]
    w: WeightView<'_>, // [out, in]
    rows: usize,
    scratch: &mut LinearScratch,
) {
    let (out, inp) = w.rows_cols();
    assert_eq!(x.len(), rows * inp, "linear_forward: x is not [rows, in]");
    assert_eq!(y.len(), rows * out, "linear_forward: y is not [rows, out]");
    if rows == 0 {
        return;
    }
    if rows <= SMALL_BATCH_ROWS {
        linear_rows_streaming(y, x, w, rows, scratch);
    } else {
        linear_gemm(y, x, w, rows, scratch);
    }
}

fn linear_rows_streaming(
    y: &mut [f32],
    x: &[f32],
    w: WeightView<'_>,
    rows: usize,
    scratch: &mut LinearScratch,
) {
    let (out, _) = w.rows_cols();
    let mut out_t = std::mem::take(&mut scratch.out_t);
    out_t.resize(out * rows, 0.0);
    rows_streaming_t(&mut out_t, x, w, rows);
    for t in 0..rows {
        for o in 0..out {
            y[t * out + o] = out_t[o * rows + t];
        }
    }
    scratch.out_t = out_t;
}

/// The row-streaming product, left transposed.
fn rows_streaming_t(
    y_t: &mut [f32], // [out, rows]
    x: &[f32],       // [rows, in]
    w: WeightView<'_>,
    rows: usize,
) {
    let (_, inp) = w.rows_cols();
    if has_integer_kernel(&w) {
        return rows_streaming_quantized_t(y_t, x, w, rows);
    }
    let row_bytes = w.row_bytes();
    let direct = convert::as_f32_slice(w.dtype, w.bytes);
    // Each task owns a contiguous run of output rows of yᵀ.
    y_t.par_chunks_mut(ROWS_PER_TASK * rows)
        .enumerate()
        .for_each_init(
            || vec![0f32; inp],
            |row_buf, (task, out_t)| {
                let first = task * ROWS_PER_TASK;
                for (r, dst) in out_t.chunks_mut(rows).enumerate() {
                    let o = first + r;
                    let w_row: &[f32] = match direct {
                        Some(all) => &all[o * inp..(o + 1) * inp],
                        None => {
                            let bytes = &w.bytes[o * row_bytes..(o + 1) * row_bytes];
                            convert::to_f32(w.dtype, bytes, row_buf);
                            row_buf
                        }
                    };
                    for (t, d) in dst.iter_mut().enumerate() {
                        *d = simd::dot(w_row, &x[t * inp..(t + 1) * inp]);
                    }
                }
            },
        );
}

/// The row-streaming product on ggml blocks: each input row quantized once to Q8 blocks, each
/// weight row dotted with them in integers (`quant::dot_row`), its bytes read once.
fn rows_streaming_quantized_t(
    y_t: &mut [f32], // [out, rows]
    x: &[f32],       // [rows, in]
    w: WeightView<'_>,
    rows: usize,
) {
    quantized_products_t(&mut [y_t], x, &[w], rows);
}

/// `ys_t[i] = (x · ws[i]ᵀ)ᵀ` for weights that all have an integer kernel and the same input
/// size, in one parallel pass: x is quantized once, and the tasks of every product share the
/// threads (one wake-up for q, k and v, not three).
fn quantized_products_t(
    ys_t: &mut [&mut [f32]], // each [out_i, rows]
    x: &[f32],               // [rows, in]
    ws: &[WeightView<'_>],   // each [out_i, in]
    rows: usize,
) {
    let inp = ws[0].rows_cols().1;
    let blocks = inp / quant::QK;
    let mut xq = vec![quant::BlockQ8::default(); rows * blocks]; // [rows, in / 32]
    for t in 0..rows {
        quant::quantize_row(
            &x[t * inp..(t + 1) * inp],
            &mut xq[t * blocks..(t + 1) * blocks],
        );
    }
    // A row of blocks is a few hundred nanoseconds of work: a few large tasks per thread, so
    // that waking and stealing do not cost more than the products (measured on SmolLM2's
    // 576-row projections).
    let total: usize = ws.iter().map(|w| w.rows_cols().0).sum();
    let per_task = total
        .div_ceil(QUANT_TASKS_PER_THREAD * rayon::current_num_threads().max(1))
        .max(ROWS_PER_TASK);
    // (weight, first output row, its slice of yᵀ)
    let mut tasks: Vec<(&WeightView<'_>, usize, &mut [f32])> = Vec::new();
    for (y_t, w) in ys_t.iter_mut().zip(ws) {
        for (i, chunk) in y_t.chunks_mut(per_task * rows).enumerate() {
            tasks.push((w, i * per_task, chunk));
        }
    }
    let xq = &xq;
    tasks.into_par_iter().for_each(|(w, first, out_t)| {
        let DType::Quant(ty) = w.dtype else {
            unreachable!("checked by the callers")
        };
        let row_bytes = w.row_bytes();
        for (r, dst) in out_t.chunks_mut(rows).enumerate() {
            let o = first + r;
            let w_row = &w.bytes[o * row_bytes..(o + 1) * row_bytes];
            for (t, d) in dst.iter_mut().enumerate() {
                *d = quant::dot_row(ty, w_row, &xq[t * blocks..(t + 1) * blocks]);
            }
        }
    });
}

/// Whether `w` takes the integer product on its blocks.
fn has_integer_kernel(w: &WeightView<'_>) -> bool {
    matches!(w.dtype, DType::Quant(ty) if quant::has_integer_kernel(ty))
}

/// `ys[i] = x · ws[i]ᵀ` for several weights that read the same input (q, k and v; gate and
/// up). Weights in ggml blocks with an integer kernel, at decode sizes, go in one parallel pass
/// with x quantized once; anything else is one [`linear_forward`] each.
pub fn linear_forward_many(
    ys: &mut [&mut [f32]], // each [rows, out_i]
    x: &[f32],             // [rows, in]
    ws: &[WeightView<'_>], // each [out_i, in]
    rows: usize,
    scratch: &mut LinearScratch,
) {
    assert_eq!(
        ys.len(),
        ws.len(),
        "linear_forward_many: one output per weight"
    );
    let inp = ws.first().map_or(0, |w| w.rows_cols().1);
    let together = rows > 0
        && rows <= SMALL_BATCH_ROWS
        && ws
            .iter()
            .all(|w| has_integer_kernel(w) && w.rows_cols().1 == inp);
    if !together {
        for (y, w) in ys.iter_mut().zip(ws) {
            linear_forward(y, x, *w, rows, scratch);
        }
        return;
    }
    assert_eq!(
        x.len(),
        rows * inp,
        "linear_forward_many: x is not [rows, in]"
    );
    for (y, w) in ys.iter().zip(ws) {
        assert_eq!(
            y.len(),
            rows * w.rows_cols().0,
            "linear_forward_many: y is not [rows, out]"
        );
    }
    if rows == 1 {
        // [1, out] is [out, 1]: no transposes.
        return quantized_products_t(ys, x, ws, rows);
    }
    let mut ts: Vec<Vec<f32>> = ws
        .iter()
        .map(|w| vec![0f32; rows * w.rows_cols().0])
        .collect();
    let mut t_refs: Vec<&mut [f32]> = ts.iter_mut().map(|t| t.as_mut_slice()).collect();
    quantized_products_t(&mut t_refs, x, ws, rows);
    for ((y, y_t), w) in ys.iter_mut().zip(&ts).zip(ws) {
        let out = w.rows_cols().0;
        for t in 0..rows {
            for o in 0..out {
                y[t * out + o] = y_t[o * rows + t];
            }
        }
    }
}

/// yᵀ[o, t] = sum_i x[t, i] · w[o, i]: the product left transposed, for a caller that reads it
/// by output column (the One2Set generator's vocabulary logits, whose per-row softmax statistics
/// vectorise across rows in this layout), so the largest matrix is never transposed.
pub fn linear_forward_transposed(
    y_t: &mut [f32],   // [out, rows]
    x: &[f32],         // [rows, in]
    w: WeightView<'_>, // [out, in]
    rows: usize,
    scratch: &mut LinearScratch,
) {
    let (out, inp) = w.rows_cols();
    assert_eq!(x.len(), rows * inp, "linear_forward: x is not [rows, in]");
    assert_eq!(
        y_t.len(),
        rows * out,
        "linear_forward: y_t is not [out, rows]"
    );
    if rows == 0 {
        return;
    }
    if rows <= SMALL_BATCH_ROWS {
        return rows_streaming_t(y_t, x, w, rows);
    }
    scratch.x_t.resize(rows * inp, 0.0);
    transpose(&mut scratch.x_t, x, rows, inp);
    if let Some(wf) = convert::as_f32_slice(w.dtype, w.bytes) {
        gemm_xwt(y_t, 0, &scratch.x_t, rows, inp, wf, out);
    } else {
        let row_bytes = w.row_bytes();
        let tile_rows = (TILE_ELEMS / inp).clamp(1, out);
        scratch.tile.resize(tile_rows * inp, 0.0);
        let mut first = 0;
        while first < out {
            let n = tile_rows.min(out - first);
            let tile = &mut scratch.tile[..n * inp];
            let bytes = &w.bytes[first * row_bytes..(first + n) * row_bytes];
            tile.par_chunks_mut(inp)
                .zip(bytes.par_chunks(row_bytes))
                .for_each(|(dst, src)| convert::to_f32(w.dtype, src, dst));
            gemm_xwt(y_t, first, &scratch.x_t, rows, inp, tile, n);
            first += n;
        }
    }
}

fn linear_gemm(
    y: &mut [f32],
    x: &[f32],
    w: WeightView<'_>,
    rows: usize,
    scratch: &mut LinearScratch,
) {
    let (out, inp) = w.rows_cols();
    // Two ways to feed gemm's column-major kernels: transpose x and y (cost rows·(in+out)), or
    // let gemm pack the weights (cost out·in). Short inputs to big matrices take the first,
    // long inputs to small matrices (a tiny model's prefill) the second.
    let pack_weights = out * inp <= rows * (inp + out);
    if !pack_weights {
        scratch.x_t.resize(rows * inp, 0.0);
        transpose(&mut scratch.x_t, x, rows, inp);
        scratch.out_t.resize(out * rows, 0.0);
    }
    let mut run = |first: usize, n: usize, wf: &[f32], scratch: &mut LinearScratch| {
        if pack_weights {
            gemm_wx(y, out, first, x, rows, inp, wf, n);
        } else {
            gemm_xwt(&mut scratch.out_t, first, &scratch.x_t, rows, inp, wf, n);
        }
    };
    if let Some(wf) = convert::as_f32_slice(w.dtype, w.bytes) {
        run(0, out, wf, scratch);
    } else {
        let row_bytes = w.row_bytes();
        let tile_rows = (TILE_ELEMS / inp).clamp(1, out);
        let mut tile = std::mem::take(&mut scratch.tile);
        tile.resize(tile_rows * inp, 0.0);
        let mut first = 0;
        while first < out {
            let n = tile_rows.min(out - first);
            let bytes = &w.bytes[first * row_bytes..(first + n) * row_bytes];
            tile[..n * inp]
                .par_chunks_mut(inp)
                .zip(bytes.par_chunks(row_bytes))
                .for_each(|(dst, src)| convert::to_f32(w.dtype, src, dst));
            run(first, n, &tile[..n * inp], scratch);
            first += n;
        }
        scratch.tile = tile;
    }
    if !pack_weights {
        transpose(y, &scratch.out_t[..out * rows], out, rows);
    }
}

/// y[:, col0..col0+n] = x · wᵀ straight into row-major y, as yᵀ = w · xᵀ with yᵀ column-major
/// (which is y row-major): gemm packs w, x and y are used in place. Output columns are split
/// across threads, each running a single-threaded GEMM.
#[allow(clippy::too_many_arguments)]
fn gemm_wx(
    y: &mut [f32], // [rows, y_cols]
    y_cols: usize,
    col0: usize,
    x: &[f32], // [rows, inp]
    rows: usize,
    inp: usize,
    w: &[f32], // [n, inp]
    n: usize,
) {
    assert!(y.len() >= rows * y_cols && col0 + n <= y_cols);
    assert!(x.len() >= rows * inp && w.len() >= n * inp);
    let tasks = TASKS_PER_THREAD * rayon::current_num_threads().max(1);
    let per_task = n.div_ceil(tasks).div_ceil(16) * 16;
    let y_addr = y.as_mut_ptr() as usize;
    (0..n.div_ceil(per_task)).into_par_iter().for_each(|task| {
        let first = task * per_task;
        let m = per_task.min(n - first);
        // SAFETY: dst = yᵀ for columns col0+first .. +m: (m × rows), row stride 1, column stride
        // y_cols, inside y by the asserts above; tasks own disjoint column ranges, so no element
        // is written by two tasks. lhs = w rows first.. (m × inp, row stride inp) and rhs = xᵀ
        // (inp × rows, column stride inp) are only read.
        unsafe {
            gemm_f32(
                m,
                rows,
                inp,
                (y_addr as *mut f32).add(col0 + first),
                col_major(y_cols),
                w.as_ptr().add(first * inp),
                row_major(inp),
                x.as_ptr(),
                col_major(inp),
                1.0,
            );
        }
    });
}

/// yᵀ[col0..col0+n, :] = w · xᵀ for a row-major w of n rows, given xᵀ. In gemm's column-major
/// terms this is dst = lhs · rhs with lhs = xᵀ and dst = yᵀ both column-major (M = rows is their
/// contiguous axis) and rhs = wᵀ read in place, one weight row per column: nothing large is
/// repacked, which is where gemm spends its time with row-major operands. The weight rows are split
/// across threads, each running a single-threaded GEMM (gemm's own split leaves a core idle on
/// LLaMA's down projection).
#[allow(clippy::too_many_arguments)]
fn gemm_xwt(
    y_t: &mut [f32], // [y_cols, rows]
    col0: usize,
    x_t: &[f32], // [inp, rows]
    rows: usize,
    inp: usize,
    w: &[f32], // [n, inp]
    n: usize,
) {
    assert!(y_t.len() >= (col0 + n) * rows);
    assert!(x_t.len() >= rows * inp && w.len() >= n * inp);
    let tasks = TASKS_PER_THREAD * rayon::current_num_threads().max(1);
    let per_task = n.div_ceil(tasks).div_ceil(16) * 16;
    y_t[col0 * rows..(col0 + n) * rows]
        .par_chunks_mut(per_task * rows)
        .enumerate()
        .for_each(|(task, dst)| {
            let first = task * per_task;
            let cols = dst.len() / rows;
            // SAFETY: dst is this task's own [cols, rows] block of yᵀ (column stride rows); lhs =
            // xᵀ is [rows × inp] column-major (column stride rows, bounded by the assert above);
            // rhs = wᵀ for weight rows first..first+cols is [inp × cols] with column stride inp,
            // inside w by the assert above. dst is borrowed mutably; x_t and w are only read.
            unsafe {
                gemm_f32(
                    rows,
                    cols,
                    inp,
                    dst.as_mut_ptr(),
                    col_major(rows),
                    x_t.as_ptr(),
                    col_major(rows),
                    w.as_ptr().add(first * inp),
                    col_major(inp),
                    1.0,
                );
            }
        });
}

/// dst[c, r] = src[r, c], in parallel strips of dst rows. Each strip goes through 16×16 tiles
/// staged in a small local array, so that both the reads and the writes run along rows.
fn transpose(
    dst: &mut [f32], // [cols, rows]
    src: &[f32],     // [rows, cols]
    rows: usize,
    cols: usize,
) {
    const T: usize = 16;
    assert!(src.len() >= rows * cols);
    dst[..rows * cols]
        .par_chunks_mut(T * rows)
        .enumerate()
        .for_each(|(strip, block)| {
            let c0 = strip * T;
            let width = block.len() / rows;
            let mut tile = [[0f32; T]; T];
            for r0 in (0..rows).step_by(T) {
                let height = T.min(rows - r0);
                for (r, line) in tile.iter_mut().enumerate().take(height) {
                    let from = (r0 + r) * cols + c0;
                    line[..width].copy_from_slice(&src[from..from + width]);
                }
                for c in 0..width {
                    let out = &mut block[c * rows + r0..c * rows + r0 + height];
                    for (r, o) in out.iter_mut().enumerate() {
                        *o = tile[r][c];
                    }
                }
            }
        });
}

/// The specification: widened weights, plain f64-accumulated loops.
pub fn linear_reference(y: &mut [f32], x: &[f32], w: WeightView<'_>, rows: usize) {
    let (out, inp) = w.rows_cols();
    let mut wf = vec![0f32; out * inp];
    convert::to_f32(w.dtype, w.bytes, &mut wf);
    for t in 0..rows {
        for o in 0..out {
            let mut acc = 0f64;
            for i in 0..inp {
                acc += x[t * inp + i] as f64 * wf[o * inp + i] as f64;
            }
            y[t * out + o] = acc as f32;
        }
    }
}
