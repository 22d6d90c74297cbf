//! Dot products of ggml-quantized weight rows with activations quantized per block of 32, in
//! integers, as ggml computes them (`ggml_vec_dot_q4_0_q8_0` and kin): the activations become
//! Q8 blocks (a scale `d = max|x| / 127` and 32 rounded `x / d`, plus their sum), and each block
//! pair contributes `d_w · d_x · Σ q_w q_x` (and `m_w · d_x · Σ q_x` for the types with an offset).
//!
//! Integer kernels cover Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 (SmolLM2's Q4_1 file is Q4_1 and Q8_0);
//! the K types (Q4_K, Q5_K, Q6_K) stay quantized in memory too and are widened to f32 one row at a
//! time by the caller. The AVX2 kernel is chosen at run time; [`dot_row_reference`] is the same
//! arithmetic in plain Rust, and both are held to each other and to the dequantized f32 product by
//! the tests below.

use half::f16;

use crate::gguf::types::GgmlType;

/// Elements per block of every type with an integer kernel.
pub const QK: usize = 32;

/// 32 activations quantized: `x ≈ d · q`, `sum = Σ q`, `s = d · sum` (the offset types' term).
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockQ8 {
    pub d: f32,
    pub s: f32,
    pub sum: i32,
    pub q: [i8; QK],
}

/// Whether [`dot_row`] has an integer kernel for `ty`.
pub fn has_integer_kernel(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(ty, Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0)
}

/// Quantizes `x` (a multiple of 32 long) into `out`, one block per 32 values (ggml's
/// `quantize_row_q8_1`, with the scale and sum kept in f32 and i32).
pub fn quantize_row(x: &[f32], out: &mut [BlockQ8]) {
    debug_assert_eq!(x.len(), out.len() * QK);
    for (b, xs) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in b.q.iter_mut().zip(xs) {
            *q = (v * inv).round() as i8;
            sum += *q as i32;
        }
        b.d = d;
        b.sum = sum;
        b.s = d * sum as f32;
    }
}

/// Σ over the blocks of one weight row (`w`: whole blocks of `ty`) against `x` (as many Q8
/// blocks as the row has 32-element groups).
pub fn dot_row(ty: GgmlType, w: &[u8], x: &[BlockQ8]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
        && std::is_x86_feature_detected!("f16c")
    {
        if std::is_x86_feature_detected!("avx512vnni") && std::is_x86_feature_detected!("avx512vl")
        {
            // SAFETY: the features the function is compiled for were just detected.
            return unsafe { avx2::dot_row_vnni(ty, w, x) };
        }
        // SAFETY: as above.
        return unsafe { avx2::dot_row(ty, w, x) };
    }
    dot_row_reference(ty, w, x)
}

fn half(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Bytes per block of a type with an integer kernel.
fn block_bytes(ty: GgmlType) -> usize {
    ty.block().1 as usize
}

/// The weight block's 32 integer values (without the offset of Q4_0 and Q5_0) and how much of
/// `sum` they carry: ggml's element order, the low nibbles first, then the high ones.
fn unpack(ty: GgmlType, b: &[u8], q: &mut [i32; QK]) -> (f32, f32, i32) {
    use GgmlType::*;
    match ty {
        Q8_0 => {
            for (j, v) in q.iter_mut().enumerate() {
                *v = b[2 + j] as i8 as i32;
            }
            (half(b, 0), 0.0, 0)
        }
        Q4_0 | Q4_1 => {
            let (m, qs) = if ty == Q4_0 {
                (0.0, &b[2..18])
            } else {
                (half(b, 2), &b[4..20])
            };
            for j in 0..16 {
                q[j] = (qs[j] & 0x0F) as i32;
                q[j + 16] = (qs[j] >> 4) as i32;
            }
            (half(b, 0), m, if ty == Q4_0 { 8 } else { 0 })
        }
        Q5_0 | Q5_1 => {
            let (m, at) = if ty == Q5_0 {
                (0.0, 2)
            } else {
                (half(b, 2), 4)
            };
            let qh = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            let qs = &b[at + 4..at + 20];
            for j in 0..16 {
                q[j] = ((qs[j] & 0x0F) as u32 | ((qh >> j) & 1) << 4) as i32;
                q[j + 16] = ((qs[j] >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4) as i32;
            }
            (half(b, 0), m, if ty == Q5_0 { 16 } else { 0 })
        }
        other => panic!("no integer kernel for {other}"),
    }
}

/// The dot product in plain Rust: per block `d_w · d_x · (Σ q_w q_x − offset · sum_x) + m_w ·
/// d_x · sum_x`.
pub fn dot_row_reference(ty: GgmlType, w: &[u8], x: &[BlockQ8]) -> f32 {
    let mut q = [0i32; QK];
    let mut total = 0f32;
    for (b, xb) in w.chunks_exact(block_bytes(ty)).zip(x) {
        let (d, m, offset) = unpack(ty, b, &mut q);
        let dot: i32 = q.iter().zip(&xb.q).map(|(&a, &b)| a * b as i32).sum();
        total += d * xb.d * (dot - offset * xb.sum) as f32 + m * xb.d * xb.sum as f32;
    }
    total
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{block_bytes, BlockQ8};
    use crate::gguf::types::GgmlType;

    /// The 32 nibbles of 16 bytes as 32 bytes in ggml's order: low nibbles, then high ones.
    #[inline(always)]
    unsafe fn nibbles(qs: *const u8) -> __m256i {
        let packed = _mm_loadu_si128(qs as *const __m128i);
        let low = _mm_set1_epi8(0x0F);
        let lo = _mm_and_si128(packed, low);
        let hi = _mm_and_si128(_mm_srli_epi16(packed, 4), low);
        _mm256_set_m128i(hi, lo)
    }

    /// 0x10 in byte j where bit j of `qh` is set (ggml's `bytes_from_bits_32`, masked).
    #[inline(always)]
    unsafe fn fifth_bits(qh: u32) -> __m256i {
        let shuffle = _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        );
        let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(qh as i32), shuffle);
        let others = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe);
        let set = _mm256_cmpeq_epi8(_mm256_or_si256(bytes, others), _mm256_set1_epi64x(-1));
        _mm256_and_si256(set, _mm256_set1_epi8(0x10))
    }

    /// Σ of 32 unsigned-by-signed byte products as 8 i32 lanes (each pair sum fits in i16:
    /// at most 2 · 255 · 128 only for bytes that never occur here; ours are ≤ 31 · 127 · 2).
    #[inline(always)]
    unsafe fn dot_u8_i8(w: __m256i, x: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1))
    }

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// The f16 at `at` (F16C: one instruction, where `half`'s run-time dispatch is a call).
    #[inline(always)]
    unsafe fn half(b: &[u8], at: usize) -> f32 {
        let bits = u16::from_le_bytes([b[at], b[at + 1]]);
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }

    /// One loop per type, so the type is not matched per block: `$block(b, xb, d)` gives a
    /// block's 8 lanes of integer products and its scalar offset term. Two blocks a round, into
    /// two accumulators each: one chain of dependent adds a block was the loop's bound.
    macro_rules! blocks_loop {
        ($w:ident, $x:ident, $bytes:expr, |$b:ident, $xb:ident, $d:ident| $block:expr) => {{
            let blocks = ($w.len() / $bytes).min($x.len());
            let one = |i: usize| {
                let $b = $w.get_unchecked(i * $bytes..(i + 1) * $bytes);
                let $xb = $x.get_unchecked(i);
                let $d = half($b, 0) * $xb.d;
                let (products, extra): (__m256i, f32) = $block;
                (
                    _mm256_mul_ps(_mm256_cvtepi32_ps(products), _mm256_set1_ps($d)),
                    extra,
                )
            };
            let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let (mut extra0, mut extra1) = (0f32, 0f32);
            let mut i = 0;
            while i + 1 < blocks {
                let (v0, e0) = one(i);
                let (v1, e1) = one(i + 1);
                acc0 = _mm256_add_ps(acc0, v0);
                acc1 = _mm256_add_ps(acc1, v1);
                extra0 += e0;
                extra1 += e1;
                i += 2;
            }
            if i < blocks {
                let (v0, e0) = one(i);
                acc0 = _mm256_add_ps(acc0, v0);
                extra0 += e0;
            }
            hsum(_mm256_add_ps(acc0, acc1)) + (extra0 + extra1)
        }};
    }

    /// Σ of 32 unsigned-by-signed byte products as 8 i32 lanes in one instruction (AVX-512
    /// VNNI on 256-bit vectors).
    #[inline(always)]
    unsafe fn dot_u8_i8_vnni(w: __m256i, x: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, x)
    }

    /// The per-type loops over one dot primitive, compiled once per instruction set.
    macro_rules! dot_row_with {
        ($name:ident, $features:literal, $dot:ident) => {
            #[target_feature(enable = $features)]
            pub unsafe fn $name(ty: GgmlType, w: &[u8], x: &[BlockQ8]) -> f32 {
                use GgmlType::*;
                let bytes = block_bytes(ty);
                let xq = |xb: &BlockQ8| _mm256_loadu_si256(xb.q.as_ptr() as *const __m256i);
                match ty {
                    Q8_0 => blocks_loop!(w, x, bytes, |b, xb, _d| {
                        let wq = _mm256_loadu_si256(b.as_ptr().add(2) as *const __m256i);
                        // |w| · (x with w's sign): unsigned by signed, as the primitive wants.
                        let p = $dot(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(xq(xb), wq));
                        (p, 0.0)
                    }),
                    Q4_0 => blocks_loop!(w, x, bytes, |b, xb, _d| {
                        let p = $dot(nibbles(b.as_ptr().add(2)), xq(xb));
                        (p, -8.0 * half(b, 0) * xb.s)
                    }),
                    Q4_1 => blocks_loop!(w, x, bytes, |b, xb, _d| {
                        let p = $dot(nibbles(b.as_ptr().add(4)), xq(xb));
                        (p, half(b, 2) * xb.s)
                    }),
                    Q5_0 => blocks_loop!(w, x, bytes, |b, xb, _d| {
                        let qh = (b.as_ptr().add(2) as *const u32).read_unaligned().to_le();
                        let q = _mm256_or_si256(nibbles(b.as_ptr().add(6)), fifth_bits(qh));
                        ($dot(q, xq(xb)), -16.0 * half(b, 0) * xb.s)
                    }),
                    Q5_1 => blocks_loop!(w, x, bytes, |b, xb, _d| {
                        let qh = (b.as_ptr().add(4) as *const u32).read_unaligned().to_le();
                        let q = _mm256_or_si256(nibbles(b.as_ptr().add(8)), fifth_bits(qh));
                        ($dot(q, xq(xb)), half(b, 2) * xb.s)
                    }),
                    other => panic!("no integer kernel for {other}"),
                }
            }
        };
    }

    dot_row_with!(dot_row, "avx2,fma,f16c", dot_u8_i8);
    dot_row_with!(
        dot_row_vnni,
        "avx2,fma,f16c,avx512vl,avx512vnni",
        dot_u8_i8_vnni
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::dequant::dequantize;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn f32(&mut self) -> f32 {
            (self.next() % 20_001) as f32 / 10_000.0 - 1.0
        }
    }

    /// Random blocks of `ty` with sane f16 scales (random bytes elsewhere: every bit pattern of
    /// the quants is valid).
    fn random_row(ty: GgmlType, blocks: usize, rng: &mut Rng) -> Vec<u8> {
        let bytes = block_bytes(ty);
        let mut w = vec![0u8; blocks * bytes];
        for b in w.chunks_exact_mut(bytes) {
            for v in b.iter_mut() {
                *v = rng.next() as u8;
            }
            b[..2].copy_from_slice(&f16::from_f32(rng.f32() * 0.1).to_le_bytes());
            if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
                b[2..4].copy_from_slice(&f16::from_f32(rng.f32() * 0.5).to_le_bytes());
            }
        }
        w
    }

    #[test]
    fn the_integer_dot_is_the_dequantized_dot_of_the_quantized_activations() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q5_1,
            GgmlType::Q8_0,
        ] {
            // 1 block, an odd count, and a long row.
            for blocks in [1, 7, 48] {
                let w = random_row(ty, blocks, &mut rng);
                let x: Vec<f32> = (0..blocks * QK).map(|_| rng.f32() * 3.0).collect();
                let mut xq = vec![BlockQ8::default(); blocks];
                quantize_row(&x, &mut xq);
                // The exact value of what the kernels compute: dequantized weights against the
                // dequantized Q8 activations, in f64.
                let mut wf = vec![0f32; blocks * QK];
                dequantize(ty, &w, &mut wf).unwrap();
                let exact: f64 = wf
                    .iter()
                    .enumerate()
                    .map(|(i, &a)| a as f64 * xq[i / QK].d as f64 * xq[i / QK].q[i % QK] as f64)
                    .sum();
                let scale: f64 = wf.iter().map(|&a| (a as f64).abs()).sum::<f64>() * 3.0;
                let reference = dot_row_reference(ty, &w, &xq) as f64;
                let fast = dot_row(ty, &w, &xq) as f64;
                assert!(
                    (reference - exact).abs() <= 1e-5 * scale,
                    "{ty} x{blocks}: reference {reference} vs exact {exact}"
                );
                assert!(
                    (fast - exact).abs() <= 1e-5 * scale,
                    "{ty} x{blocks}: fast {fast} vs exact {exact}"
                );
                // And the quantization of x costs little against the f32 product.
                let f32_dot: f64 = wf.iter().zip(&x).map(|(&a, &b)| a as f64 * b as f64).sum();
                assert!(
                    (fast - f32_dot).abs() <= 2e-2 * scale / (blocks as f64).sqrt(),
                    "{ty} x{blocks}: {fast} vs f32 {f32_dot}"
                );
            }
        }
    }

    #[test]
    fn activations_round_to_the_nearest_step_and_zero_blocks_stay_zero() {
        let mut x = vec![0f32; 64];
        x[0] = 1.27;
        x[1] = -0.5;
        x[2] = 0.004;
        let mut q = vec![BlockQ8::default(); 2];
        quantize_row(&x, &mut q);
        assert!((q[0].d - 0.01).abs() < 1e-7);
        assert_eq!(&q[0].q[..3], &[127, -50, 0]);
        assert_eq!(q[0].sum, 77);
        assert_eq!((q[1].d, q[1].sum), (0.0, 0));
    }
}
