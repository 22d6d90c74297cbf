//! Dot products and fused multiply-adds vectorised for the CPU this runs on. The loops are plain
//! Rust over 32 independent lanes so that LLVM emits AVX-512 or AVX2 FMA code under a
//! `target_feature` wrapper chosen at run time; the generic version is the same loop.

const LANES: usize = 32;

macro_rules! dot_body {
    ($a:ident, $b:ident, $fma:expr) => {{
        let n = $a.len().min($b.len());
        let (a, b) = (&$a[..n], &$b[..n]);
        let mut acc = [0f32; LANES];
        let chunks = n / LANES;
        for c in 0..chunks {
            let xa = &a[c * LANES..(c + 1) * LANES];
            let xb = &b[c * LANES..(c + 1) * LANES];
            for l in 0..LANES {
                acc[l] = $fma(xa[l], xb[l], acc[l]);
            }
        }
        let mut tail = 0f32;
        for i in chunks * LANES..n {
            tail += a[i] * b[i];
        }
        // Pairwise lane reduction keeps the rounding error at O(log LANES) additions.
        let mut width = LANES;
        while width > 1 {
            width /= 2;
            for l in 0..width {
                acc[l] += acc[l + width];
            }
        }
        acc[0] + tail
    }};
}

macro_rules! axpy_body {
    ($y:ident, $alpha:ident, $x:ident, $fma:expr) => {{
        let n = $y.len().min($x.len());
        for i in 0..n {
            $y[i] = $fma($alpha, $x[i], $y[i]);
        }
    }};
}

#[inline(always)]
fn fma(a: f32, b: f32, c: f32) -> f32 {
    a.mul_add(b, c)
}

#[inline(always)]
fn mul_add_plain(a: f32, b: f32, c: f32) -> f32 {
    a * b + c
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    dot_body!(a, b, fma)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_body!(a, b, fma)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn axpy_avx512(y: &mut [f32], alpha: f32, x: &[f32]) {
    axpy_body!(y, alpha, x, fma)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn axpy_avx2(y: &mut [f32], alpha: f32, x: &[f32]) {
    axpy_body!(y, alpha, x, fma)
}

/// The dot product body with fused multiply-adds, for inlining into a caller compiled with
/// `target_feature(enable = "fma")` (elsewhere `mul_add` is a slow library call).
#[inline(always)]
pub fn dot_fma_inline(a: &[f32], b: &[f32]) -> f32 {
    dot_body!(a, b, fma)
}

/// `y += alpha * x` with fused multiply-adds, for inlining as `dot_fma_inline`.
#[inline(always)]
pub fn axpy_fma_inline(y: &mut [f32], alpha: f32, x: &[f32]) {
    axpy_body!(y, alpha, x, fma)
}

/// `y += alpha * x` without fused multiply-adds.
#[inline(always)]
pub fn axpy_reference(y: &mut [f32], alpha: f32, x: &[f32]) {
    axpy_body!(y, alpha, x, mul_add_plain)
}

/// e^x for f32 in a branch-free form that vectorises (Cephes' expf: x = n·ln2 + r, a degree-6
/// polynomial for e^r, 2^n built in the exponent bits); within 2 ulp of the correctly rounded
/// result over the softmax range (x <= 0), and 0 below -87.
#[inline(always)]
pub fn exp_fast(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer in plain arithmetic, which
    // vectorises where `round` is a library call.
    const ROUNDER: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUNDER) - ROUNDER;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5e-1;
    let e = p * r * r + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    e * scale
}

#[inline(always)]
fn softmax_body(s: &mut [f32]) {
    let mut maxes = [f32::NEG_INFINITY; 16];
    for chunk in s.chunks(16) {
        for (x, m) in chunk.iter().zip(maxes.iter_mut()) {
            *m = m.max(*x);
        }
    }
    let max = maxes.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let mut lanes = [0f32; 16];
    for chunk in s.chunks_mut(16) {
        for (x, lane) in chunk.iter_mut().zip(lanes.iter_mut()) {
            *x = exp_fast(*x - max);
            *lane += *x;
        }
    }
    let inv = 1.0 / lanes.iter().sum::<f32>();
    for x in s.iter_mut() {
        *x *= inv;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn softmax_avx512(s: &mut [f32]) {
    softmax_body(s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_avx2(s: &mut [f32]) {
    softmax_body(s)
}

/// Softmax of `s` in place: exp(s - max) / sum.
pub fn softmax_in_place(s: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (and so FMA), checked just above.
            return unsafe { softmax_avx512(s) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            return unsafe { softmax_avx2(s) };
        }
    }
    softmax_body(s)
}

/// Plain f32 dot product of the common prefix of `a` and `b`: the reference.
pub fn dot_reference(a: &[f32], b: &[f32]) -> f32 {
    dot_body!(a, b, mul_add_plain)
}

/// `sum(a[i] * b[i])` over the common length.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (and so FMA), checked just above.
            return unsafe { dot_avx512(a, b) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_reference(a, b)
}

/// `y[i] += alpha * x[i]` over the common length.
#[inline]
pub fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (and so FMA), checked just above.
            return unsafe { axpy_avx512(y, alpha, x) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            return unsafe { axpy_avx2(y, alpha, x) };
        }
    }
    axpy_body!(y, alpha, x, mul_add_plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_fast_matches_libm() {
        let mut x = -90.0f32;
        while x < 10.0 {
            let (got, want) = (exp_fast(x) as f64, (x as f64).exp());
            let tol = 3.0 * f32::EPSILON as f64 * want + f32::MIN_POSITIVE as f64 * 4.0;
            assert!(
                (got - want).abs() <= tol || (x < -87.0 && got == 0.0),
                "x={x}: {got} vs {want}"
            );
            x += 0.0137;
        }
    }

    #[test]
    fn dot_and_axpy_match_plain_loops_on_awkward_lengths() {
        for n in [0usize, 1, 7, 31, 32, 33, 100, 1027] {
            let a: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 97) as f32 / 13.0 - 3.0)
                .collect();
            let b: Vec<f32> = (0..n)
                .map(|i| ((i * 104729) % 89) as f32 / 11.0 - 4.0)
                .collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let got = dot(&a, &b) as f64;
            assert!(
                (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "n={n}: {got} vs {want}"
            );

            let mut y = b.clone();
            axpy(&mut y, 0.5, &a);
            for i in 0..n {
                assert!((y[i] - (b[i] + 0.5 * a[i])).abs() < 1e-5, "n={n} i={i}");
            }
        }
    }
}
