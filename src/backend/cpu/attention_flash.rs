//! Causal attention for long query chunks (prefill) with AVX-512: 16 queries of one head, one per
//! SIMD lane, stream their sequence's keys and values straight from the paged cache, one cache
//! block at a time, with an online softmax. Q·Kᵀ runs four keys at a time and P·V eight output
//! dimensions at a time with their accumulators in registers, so nothing is gathered or packed and
//! the masked half of the causal square is never touched. CPUs without AVX-512 use the GEMM path
//! in `attention.rs`, which the tests also hold to the reference.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use rayon::prelude::*;

use crate::backend::paged::{PagedLayer, TokenContext};

const LANES: usize = 16;

#[derive(Default)]
struct Scratch {
    q_t: Vec<[f32; LANES]>,   // [head_dim] scaled queries, transposed
    acc: Vec<[f32; LANES]>,   // [head_dim] running Σ p·v
    probs: Vec<[f32; LANES]>, // [block_size] probabilities of one cache block
    offsets: Vec<usize>,      // [block_size] where each slot's row starts in the cache
}

/// Whether this CPU can run `attention_flash`.
pub fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// Attention of the query runs `runs` (first token, count), each a chunk of one sequence.
/// Callers check `available()` first.
pub fn attention_flash(
    out: &mut [f32], // [tokens, num_heads, head_dim]
    q: &[f32],       // [tokens, num_heads, head_dim]
    cache: PagedLayer<'_>,
    ctx: &TokenContext<'_>,
    num_heads: usize,
    runs: &[(usize, usize)],
) {
    assert!(available(), "attention_flash needs AVX-512F");
    let hd = cache.head_dim;
    let row = num_heads * hd;
    let tasks: Vec<(usize, usize, usize)> = runs
        .iter()
        .flat_map(|&(first, n)| {
            (0..num_heads).flat_map(move |h| {
                (0..n.div_ceil(LANES)).map(move |tile| {
                    let t0 = first + tile * LANES;
                    (t0, (first + n - t0).min(LANES), h)
                })
            })
        })
        .collect();
    let out_addr = out.as_mut_ptr() as usize;
    let out_len = out.len();
    tasks
        .par_iter()
        .for_each_init(Scratch::default, |scratch, &(t0, n, h)| {
            assert!((t0 + n - 1) * row + (h + 1) * hd <= out_len);
            // SAFETY: AVX-512F is present (asserted above). Tasks own disjoint (token, head) pairs, so
            // the rows t0..t0+n of head h written through out_addr (inside `out` by the assert) are
            // written by this task alone.
            unsafe {
                attend_tile(
                    out_addr as *mut f32,
                    q,
                    cache,
                    ctx,
                    num_heads,
                    t0,
                    n,
                    h,
                    scratch,
                )
            }
        });
}

#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_tile(
    out: *mut f32,
    q: &[f32],
    cache: PagedLayer<'_>,
    ctx: &TokenContext<'_>,
    num_heads: usize,
    t0: usize,
    n: usize,
    h: usize,
    sc: &mut Scratch,
) {
    let hd = cache.head_dim;
    let bs = cache.block_size;
    let row = num_heads * hd;
    let kv_head = h / (num_heads / cache.num_kv_heads);
    let scale = 1.0 / (hd as f32).sqrt();
    let table = ctx.block_tables[ctx.token_seq[t0] as usize];

    // Rows past n (a short last tile) repeat the first row and are not written back.
    let mut pos = [0i32; LANES];
    sc.q_t.clear();
    sc.q_t.resize(hd, [0.0; LANES]);
    for (lane, p) in pos.iter_mut().enumerate() {
        let t = t0 + if lane < n { lane } else { 0 };
        *p = ctx.token_pos[t] as i32;
        for (d, v) in q[t * row + h * hd..t * row + (h + 1) * hd]
            .iter()
            .enumerate()
        {
            sc.q_t[d][lane] = v * scale;
        }
    }
    let len = *pos.iter().max().unwrap() as usize + 1;
    sc.acc.clear();
    sc.acc.resize(hd, [0.0; LANES]);
    sc.probs.resize(bs, [0.0; LANES]);
    // SAFETY (whole body): every cache read is at a slot offset computed from the block table for
    // positions < len <= the sequence's written length, plus < hd, inside cache.k / cache.v; the
    // arrays loaded and stored hold 16 f32s.
    unsafe {
        let positions = _mm512_loadu_si512(pos.as_ptr() as *const _);
        let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut max = neg_inf;
        let mut sum = _mm512_setzero_ps();
        for (b, &block) in table.iter().enumerate().take(len.div_ceil(bs)) {
            let j0 = b * bs;
            let count = bs.min(len - j0);
            sc.offsets.clear();
            sc.offsets.extend(
                (0..count).map(|s| ((block as usize * bs + s) * cache.num_kv_heads + kv_head) * hd),
            );
            // The raw reads below rely on this: every key and value row of the block is inside the
            // cache (a block table pointing outside it is a bug, caught here instead of read).
            assert!(sc
                .offsets
                .iter()
                .all(|&o| o + hd <= cache.k.len() && o + hd <= cache.v.len()));
            // Scores, four keys at a time against the 16 queries.
            let mut block_max = neg_inf;
            let mut slot = 0;
            while slot < count {
                let m = (count - slot).min(4);
                let mut s = [_mm512_setzero_ps(); 4];
                let k: [*const f32; 4] =
                    std::array::from_fn(|i| cache.k.as_ptr().add(sc.offsets[slot + i.min(m - 1)]));
                for d in 0..hd {
                    let qd = _mm512_loadu_ps(sc.q_t[d].as_ptr());
                    for i in 0..4 {
                        s[i] = _mm512_fmadd_ps(qd, _mm512_set1_ps(*k[i].add(d)), s[i]);
                    }
                }
                for (i, si) in s.iter().enumerate().take(m) {
                    let j = _mm512_set1_epi32((j0 + slot + i) as i32);
                    let masked = _mm512_cmpgt_epi32_mask(j, positions);
                    let si = _mm512_mask_mov_ps(*si, masked, neg_inf);
                    block_max = _mm512_max_ps(block_max, si);
                    _mm512_storeu_ps(sc.probs[slot + i].as_mut_ptr(), si);
                }
                slot += m;
            }
            // Online softmax. Key 0 is visible to every query, so after the first block the
            // running maximum is finite in every lane.
            let new_max = _mm512_max_ps(max, block_max);
            if b > 0 {
                let alpha = exp512(_mm512_sub_ps(max, new_max));
                sum = _mm512_mul_ps(sum, alpha);
                for a in sc.acc.iter_mut() {
                    _mm512_storeu_ps(
                        a.as_mut_ptr(),
                        _mm512_mul_ps(_mm512_loadu_ps(a.as_ptr()), alpha),
                    );
                }
            }
            max = new_max;
            for p in sc.probs[..count].iter_mut() {
                let s = _mm512_loadu_ps(p.as_ptr());
                let masked = _mm512_cmpeq_ps_mask(s, neg_inf);
                let e = _mm512_maskz_mov_ps(!masked, exp512(_mm512_sub_ps(s, max)));
                sum = _mm512_add_ps(sum, e);
                _mm512_storeu_ps(p.as_mut_ptr(), e);
            }
            // P·V, eight output dimensions at a time in registers (a constant count, so that the
            // accumulators are unrolled into registers), then any remainder one at a time.
            const R: usize = 8;
            let mut d0 = 0;
            while d0 + R <= hd {
                let mut a: [__m512; R] =
                    std::array::from_fn(|r| _mm512_loadu_ps(sc.acc[d0 + r].as_ptr()));
                for (p, &off) in sc.probs[..count].iter().zip(&sc.offsets) {
                    let ps = _mm512_loadu_ps(p.as_ptr());
                    let v = cache.v.as_ptr().add(off + d0);
                    for (r, ar) in a.iter_mut().enumerate() {
                        *ar = _mm512_fmadd_ps(ps, _mm512_set1_ps(*v.add(r)), *ar);
                    }
                }
                for (r, ar) in a.iter().enumerate() {
                    _mm512_storeu_ps(sc.acc[d0 + r].as_mut_ptr(), *ar);
                }
                d0 += R;
            }
            for d in d0..hd {
                let mut ar = _mm512_loadu_ps(sc.acc[d].as_ptr());
                for (p, &off) in sc.probs[..count].iter().zip(&sc.offsets) {
                    let v = *cache.v.as_ptr().add(off + d);
                    ar = _mm512_fmadd_ps(_mm512_loadu_ps(p.as_ptr()), _mm512_set1_ps(v), ar);
                }
                _mm512_storeu_ps(sc.acc[d].as_mut_ptr(), ar);
            }
        }
        let mut sums = [0f32; LANES];
        _mm512_storeu_ps(sums.as_mut_ptr(), sum);
        for (lane, total) in sums.iter().enumerate().take(n) {
            let inv = 1.0 / total;
            let dst = out.add((t0 + lane) * row + h * hd);
            for d in 0..hd {
                *dst.add(d) = sc.acc[d][lane] * inv;
            }
        }
    }
}

/// e^x on 16 lanes: the same Cephes polynomial as `simd::exp_fast`, 2^n applied with `scalef`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn exp512(x: __m512) -> __m512 {
    let x = _mm512_max_ps(
        _mm512_min_ps(x, _mm512_set1_ps(88.0)),
        _mm512_set1_ps(-87.0),
    );
    let n = _mm512_roundscale_ps(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        5e-1,
    ] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let e = _mm512_fmadd_ps(
        _mm512_mul_ps(p, r),
        r,
        _mm512_add_ps(r, _mm512_set1_ps(1.0)),
    );
    _mm512_scalef_ps(e, n)
}
