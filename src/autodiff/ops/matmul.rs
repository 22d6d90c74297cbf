//! Row-major matrix products through the `gemm` crate's generic entry point, which dispatches to
//! its f32 and f64 kernels.

use gemm::Parallelism;

use crate::autodiff::Real;

/// Products at least this big (m·n·k) use both cores; smaller ones are not worth the fork.
const PARALLEL_WORK: usize = 1 << 18;

/// `c[m, n] = (acc ? c : 0) + op(a) · op(b)`, where `op(a)` is `a` stored `[m, k]`, or, with `ta`,
/// `a` stored `[k, m]` (transposed); likewise `op(b)` is `b` stored `[k, n]`, or `[n, k]` with `tb`.
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Real>(
    c: &mut [T],
    a: &[T],
    b: &[T],
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
    acc: bool,
) {
    assert!(
        c.len() >= m * n && a.len() >= m * k && b.len() >= k * n,
        "matmul sizes"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !acc {
            c[..m * n].fill(T::zero());
        }
        return;
    }
    // (row stride, column stride) of each operand.
    let (a_rs, a_cs) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (b_rs, b_cs) = if tb { (1, k as isize) } else { (n as isize, 1) };
    let par = if m * n * k >= PARALLEL_WORK {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: the asserts above bound every element the strides reach for these sizes
    // (a: max index (m-1)·a_rs + (k-1)·a_cs < m·k, likewise b and c); `c` is a unique borrow so it
    // overlaps neither input.
    unsafe {
        gemm::gemm::<T>(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            acc,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            T::one(),
            T::one(),
            false,
            false,
            false,
            par,
        )
    }
}
