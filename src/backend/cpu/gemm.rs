//! One entry point to the `gemm` crate's f32 kernels, with named strides. gemm is column-major
//! minded: an operand is cheapest when its rows are adjacent in memory (`row_stride == 1`), and
//! any other layout is packed first; callers pick the formulation that avoids packing big operands.

/// How to walk a matrix operand: element (i, j) lives at `ptr + i·row_stride + j·col_stride`.
#[derive(Clone, Copy, Debug)]
pub struct Strides {
    pub row: isize,
    pub col: isize,
}

/// Row-major storage of a matrix with `cols` columns (element (i, j) at i·cols + j).
pub fn row_major(cols: usize) -> Strides {
    Strides {
        row: cols as isize,
        col: 1,
    }
}

/// Column-major storage of a matrix with `rows` rows (element (i, j) at j·rows + i).
pub fn col_major(rows: usize) -> Strides {
    Strides {
        row: 1,
        col: rows as isize,
    }
}

/// dst (m × n) = scale · lhs (m × k) · rhs (k × n), single-threaded (callers split the work).
///
/// # Safety
/// Every element the strides reach for the given sizes must lie inside the allocation its pointer
/// comes from; `dst` must not overlap `lhs` or `rhs`, nor be written concurrently at the same
/// elements by another thread.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_strides: Strides,
    lhs: *const f32,
    lhs_strides: Strides,
    rhs: *const f32,
    rhs_strides: Strides,
    scale: f32,
) {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        gemm_into(
            false,
            m,
            n,
            k,
            dst,
            dst_strides,
            lhs,
            lhs_strides,
            rhs,
            rhs_strides,
            scale,
        )
    }
}

/// dst (m × n) += scale · lhs (m × k) · rhs (k × n), single-threaded: [`gemm_f32`] that adds to
/// what `dst` holds.
///
/// # Safety
/// As [`gemm_f32`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_f32_accumulate(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_strides: Strides,
    lhs: *const f32,
    lhs_strides: Strides,
    rhs: *const f32,
    rhs_strides: Strides,
    scale: f32,
) {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        gemm_into(
            true,
            m,
            n,
            k,
            dst,
            dst_strides,
            lhs,
            lhs_strides,
            rhs,
            rhs_strides,
            scale,
        )
    }
}

/// The gemm crate's call: dst = (accumulate ? dst : 0) + scale · lhs · rhs.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_into(
    accumulate: bool,
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_strides: Strides,
    lhs: *const f32,
    lhs_strides: Strides,
    rhs: *const f32,
    rhs_strides: Strides,
    scale: f32,
) {
    // SAFETY: forwarded from the callers' contract.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_strides.col,
            dst_strides.row,
            accumulate,
            lhs,
            lhs_strides.col,
            lhs_strides.row,
            rhs,
            rhs_strides.col,
            rhs_strides.row,
            if accumulate { 1.0 } else { 0.0 },
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}
