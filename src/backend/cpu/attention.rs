//! Causal attention over the paged KV cache, for a batch of query chunks of any length (a
//! prefill chunk, a forced-text chunk, a single decode token), with grouped-query attention.
//!
//! Each query token attends to positions 0..=its own position of its sequence. The keys and values
//! of the chunk itself must already be in the cache (written by slot mapping before this runs), so
//! causality inside the chunk falls out of the per-token context length.

use rayon::prelude::*;

use super::gemm::{col_major, gemm_f32, row_major};
use super::simd;
use crate::backend::paged::{PagedLayer, TokenContext};

/// Query rows per task of the GEMM path.
const QUERY_TILE: usize = 64;

/// Query chunks up to this long attend key by key straight from the cache blocks; longer ones
/// (prefill) gather the keys once and use two GEMMs.
const DIRECT_MAX_QUERIES: usize = 8;

/// Causal attention of a batch of query chunks over the paged cache.
pub fn paged_attention_forward(
    out: &mut [f32], // [tokens, num_heads, head_dim]
    q: &[f32],       // [tokens, num_heads, head_dim]
    cache: PagedLayer<'_>,
    ctx: &TokenContext<'_>,
    num_heads: usize,
) {
    paged_attention_with(out, q, cache, ctx, num_heads, true)
}

/// As `paged_attention_forward`, never using the AVX-512 kernel for long chunks: the portable
/// path that CPUs without AVX-512 take, exposed so that tests hold it to the reference too.
pub fn paged_attention_forward_portable(
    out: &mut [f32], // [tokens, num_heads, head_dim]
    q: &[f32],       // [tokens, num_heads, head_dim]
    cache: PagedLayer<'_>,
    ctx: &TokenContext<'_>,
    num_heads: usize,
) {
    paged_attention_with(out, q, cache, ctx, num_heads, false)
}

fn paged_attention_with(
    out: &mut [f32],
    q: &[f32],
    cache: PagedLayer<'_>,
    ctx: &TokenContext<'_>,
    num_heads: usize,
    allow_flash: bool,
) {
    let row = num_heads * cache.head_dim;
    assert_eq!(
        q.len(),
        ctx.token_seq.len() * row,
        "q is not [tokens, heads, head_dim]"
    );
    assert_eq!(out.len(), q.len(), "out is not [tokens, heads, head_dim]");
    // Each sequence's tokens are contiguous in the batch.
    let mut runs: Vec<(usize, usize)> = Vec::new(); // (first token, count)
    for (t, &s) in ctx.token_seq.iter().enumerate() {
        match runs.last_mut() {
            Some((first, n)) if ctx.token_seq[*first] == s => *n += 1,
            _ => runs.push((t, 1)),
        }
    }
    let (short, long): (Vec<_>, Vec<_>) = runs.into_iter().partition(|r| r.1 <= DIRECT_MAX_QUERIES);
    let short_tokens: Vec<usize> = short.iter().flat_map(|&(f, n)| f..f + n).collect();
    attention_direct(out, q, cache, ctx, num_heads, &short_tokens);
    #[cfg(target_arch = "x86_64")]
    if allow_flash && super::attention_flash::available() {
        super::attention_flash::attention_flash(out, q, cache, ctx, num_heads, &long);
        return;
    }
    attention_gemm(out, q, cache, ctx, num_heads, &long);
}

/// Tasks of one or more query heads of one token that share a KV head: with enough tokens
/// (batched decoding), all the heads of a KV head score each key as it is read (grouped-query
/// attention then reads each key and value once, not once per query head); with few (one
/// sequence decoding), one head a task, so that both cores have work (3 KV heads on 2 threads
/// measured slower than 9 query heads). Keys are walked block by block through the table.
fn attention_direct(
    out: &mut [f32],
    q: &[f32],
    cache: PagedLayer<'_>,
    ctx: &TokenContext<'_>,
    num_heads: usize,
    tokens: &[usize],
) {
    let hd = cache.head_dim;
    let row = num_heads * hd;
    let group = num_heads / cache.num_kv_heads;
    let heads_per_task = if tokens.len() * cache.num_kv_heads >= 4 * rayon::current_num_threads() {
        group
    } else {
        1
    };
    let tasks_per_token = num_heads / heads_per_task;
    let out_addr = out.as_mut_ptr() as usize;
    (0..tokens.len() * tasks_per_token)
        .into_par_iter()
        .for_each_init(Vec::new, |scores, idx| {
            let t = tokens[idx / tasks_per_token];
            let h0 = idx % tasks_per_token * heads_per_task;
            let first = t * row + h0 * hd;
            let n = heads_per_task * hd;
            // SAFETY: every task owns the outputs of its own heads of its own token (adjacent in
            // the row, disjoint from every other task's); they lie inside `out`, whose length was
            // checked above.
            let o = unsafe { std::slice::from_raw_parts_mut((out_addr as *mut f32).add(first), n) };
            attend_group(o, &q[first..first + n], cache, ctx, t, h0 / group, scores);
        });
}

/// `FMA` picks fused multiply-adds, for callers compiled with the FMA feature (the helpers are
/// called directly, not passed as values, so that they inline with the caller's features).
#[inline(always)]
fn attend_group_body<const FMA: bool>(
    o: &mut [f32], // [group, head_dim]
    qg: &[f32],    // [group, head_dim]
    cache: PagedLayer<'_>,
    ctx: &TokenContext<'_>,
    t: usize,
    kv_head: usize,
    scratch: &mut Vec<f32>,
) {
    let dot = |a: &[f32], b: &[f32]| {
        if FMA {
            simd::dot_fma_inline(a, b)
        } else {
            simd::dot_reference(a, b)
        }
    };
    let hd = cache.head_dim;
    let group = qg.len() / hd;
    let bs = cache.block_size;
    let table = ctx.block_tables[ctx.token_seq[t] as usize];
    let len = ctx.token_pos[t] as usize + 1;
    let scale = 1.0 / (hd as f32).sqrt();
    let key_at = |block: u32, slot: usize| {
        ((block as usize * bs + slot) * cache.num_kv_heads + kv_head) * hd
    };
    // scores [group, len], then each head's running max and, later, 1 / its sum.
    scratch.clear();
    scratch.resize(group * len + group, 0.0);
    let (scores, max) = scratch.split_at_mut(group * len);
    max.fill(f32::NEG_INFINITY);
    for (b, &block) in table.iter().enumerate().take(len.div_ceil(bs)) {
        for slot in 0..bs.min(len - b * bs) {
            let at = key_at(block, slot);
            let key = &cache.k[at..at + hd];
            let j = b * bs + slot;
            for h in 0..group {
                let s = dot(&qg[h * hd..(h + 1) * hd], key) * scale;
                max[h] = max[h].max(s);
                scores[h * len + j] = s;
            }
        }
    }
    for h in 0..group {
        let mut sum = 0f32;
        for s in scores[h * len..(h + 1) * len].iter_mut() {
            *s = simd::exp_fast(*s - max[h]);
            sum += *s;
        }
        max[h] = 1.0 / sum;
    }
    let inv = max;
    o.fill(0.0);
    for (b, &block) in table.iter().enumerate().take(len.div_ceil(bs)) {
        for slot in 0..bs.min(len - b * bs) {
            let at = key_at(block, slot);
            let value = &cache.v[at..at + hd];
            let j = b * bs + slot;
            for h in 0..group {
                let alpha = scores[h * len + j] * inv[h];
                let oh = &mut o[h * hd..(h + 1) * hd];
                if FMA {
                    simd::axpy_fma_inline(oh, alpha, value);
                } else {
                    simd::axpy_reference(oh, alpha, value);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn attend_group_avx512(
    o: &mut [f32],
    qh: &[f32],
    cache: PagedLayer<'_>,
    ctx: &TokenContext<'_>,
    t: usize,
    kv_head: usize,
    scores: &mut Vec<f32>,
) {
    attend_group_body::<true>(o, qh, cache, ctx, t, kv_head, scores)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_group_avx2(
    o: &mut [f32],
    qh: &[f32],
    cache: PagedLayer<'_>,
    ctx: &TokenContext<'_>,
    t: usize,
    kv_head: usize,
    scores: &mut Vec<f32>,
) {
    attend_group_body::<true>(o, qh, cache, ctx, t, kv_head, scores)
}

/// The query heads of one token that share a KV head, over its sequence's cache, compiled for the
/// best available instruction set so that the per-key dot products inline.
fn attend_group(
    o: &mut [f32],
    qh: &[f32],
    cache: PagedLayer<'_>,
    ctx: &TokenContext<'_>,
    t: usize,
    kv_head: usize,
    scores: &mut Vec<f32>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (and so FMA), checked just above.
            return unsafe { attend_group_avx512(o, qh, cache, ctx, t, kv_head, scores) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            return unsafe { attend_group_avx2(o, qh, cache, ctx, t, kv_head, scores) };
        }
    }
    attend_group_body::<false>(o, qh, cache, ctx, t, kv_head, scores)
}

/// Per sequence and KV head: gather the head's keys and values from the blocks, then
/// two GEMMs per query head — scores = Q·Kᵀ, causal softmax per row, out = P·V — so that a long
/// prefill chunk runs at matrix-product speed instead of one short dot product per key.
fn attention_gemm(
    out: &mut [f32],
    q: &[f32],
    cache: PagedLayer<'_>,
    ctx: &TokenContext<'_>,
    num_heads: usize,
    runs: &[(usize, usize)],
) {
    let hd = cache.head_dim;
    let kv_heads = cache.num_kv_heads;
    let group = num_heads / kv_heads;
    let row = num_heads * hd;
    let scale = 1.0 / (hd as f32).sqrt();
    // Tasks are (sequence run, kv head, tile of query rows): a tile only reads the keys up to its
    // own last position, which skips most of the masked half of a causal prefill, and its score
    // block stays in cache.
    let tasks: Vec<(usize, usize, usize, usize)> = runs
        .iter()
        .flat_map(|&(first, n)| {
            (0..kv_heads).flat_map(move |g| {
                (0..n.div_ceil(QUERY_TILE)).map(move |tile| {
                    let t0 = first + tile * QUERY_TILE;
                    (t0, (first + n - t0).min(QUERY_TILE), g, first)
                })
            })
        })
        .collect();
    let out_addr = out.as_mut_ptr() as usize;
    tasks.par_iter().for_each_init(
        || (Vec::new(), Vec::new(), Vec::new()),
        |(k, v, scores): &mut (Vec<f32>, Vec<f32>, Vec<f32>), &(first, n, kv_head, seq_first)| {
            let table = ctx.block_tables[ctx.token_seq[seq_first] as usize];
            let positions = &ctx.token_pos[first..first + n];
            let len = *positions.iter().max().unwrap() as usize + 1;
            // k, v: [len, head_dim], gathered block by block with whole-row copies.
            k.resize(len * hd, 0.0);
            v.resize(len * hd, 0.0);
            for (b, &block) in table
                .iter()
                .enumerate()
                .take(len.div_ceil(cache.block_size))
            {
                for slot in 0..cache.block_size.min(len - b * cache.block_size) {
                    let j = b * cache.block_size + slot;
                    let at = ((block as usize * cache.block_size + slot) * kv_heads + kv_head) * hd;
                    k[j * hd..(j + 1) * hd].copy_from_slice(&cache.k[at..at + hd]);
                    v[j * hd..(j + 1) * hd].copy_from_slice(&cache.v[at..at + hd]);
                }
            }
            scores.resize(n * len, 0.0); // [n, len]
            for h in kv_head * group..(kv_head + 1) * group {
                let q_h = &q[first * row + h * hd..];
                // SAFETY: scores is [n, len] (column stride len as dst of m = len rows); k is
                // [len, hd] read as a (len × hd) row-major lhs; q_h is read as (hd × n) with
                // column stride `row`, inside q since the last element is at
                // (n-1)·row + hd - 1 < q_h.len(). Nothing aliases scores.
                unsafe {
                    gemm_f32(
                        len,
                        n,
                        hd,
                        scores.as_mut_ptr(),
                        col_major(len),
                        k.as_ptr(),
                        row_major(hd),
                        q_h.as_ptr(),
                        col_major(row),
                        scale,
                    );
                }
                for (t, s) in scores.chunks_mut(len).enumerate() {
                    let visible = positions[t] as usize + 1;
                    simd::softmax_in_place(&mut s[..visible]);
                    s[visible..].fill(0.0);
                }
                // SAFETY: the destination is out[first + t][h][0..hd] for t < n, an (hd × n)
                // column-major block with column stride `row`. Tasks own disjoint (sequence,
                // kv head) pairs, so no two tasks write the same element; v is [len, hd] read as an
                // (hd × len) column-major lhs, scores as (len × n) column-major.
                unsafe {
                    let dst = (out_addr as *mut f32).add(first * row + h * hd);
                    gemm_f32(
                        hd,
                        n,
                        len,
                        dst,
                        col_major(row),
                        v.as_ptr(),
                        col_major(hd),
                        scores.as_ptr(),
                        col_major(len),
                        1.0,
                    );
                }
            }
        },
    );
}

/// The specification: attention over contiguous keys and values of one sequence, f64 softmax.
/// Query token t sits at position `first_pos + t` and sees keys 0..=first_pos + t.
#[allow(clippy::too_many_arguments)]
pub fn attention_reference(
    out: &mut [f32], // [tokens, num_heads, head_dim]
    q: &[f32],       // [tokens, num_heads, head_dim]
    k: &[f32],       // [seq_len, num_kv_heads, head_dim]
    v: &[f32],       // [seq_len, num_kv_heads, head_dim]
    first_pos: usize,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
) {
    let tokens = q.len() / (num_heads * head_dim);
    let group = num_heads / num_kv_heads;
    let scale = 1.0 / (head_dim as f64).sqrt();
    for t in 0..tokens {
        for h in 0..num_heads {
            let kvh = h / group;
            let qh = &q[(t * num_heads + h) * head_dim..][..head_dim];
            let len = first_pos + t + 1;
            let scores: Vec<f64> = (0..len)
                .map(|j| {
                    let kj = &k[(j * num_kv_heads + kvh) * head_dim..][..head_dim];
                    qh.iter()
                        .zip(kj)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = weights.iter().sum();
            let o = &mut out[(t * num_heads + h) * head_dim..][..head_dim];
            for (d, od) in o.iter_mut().enumerate() {
                let acc: f64 = (0..len)
                    .map(|j| weights[j] * v[(j * num_kv_heads + kvh) * head_dim + d] as f64)
                    .sum();
                *od = (acc / sum) as f32;
            }
        }
    }
}
