//! Causal attention over the paged KV cache, for a batch of query chunks of any length (a
//! prefill chunk, a forced-text chunk, a single decode token), with grouped-query attention.
//!
//! Each query token attends to positions 0..=its own position of its sequence. The keys and values
//! of the chunk itself must already be in the cache (written by slot mapping before this runs), so
//! causality inside the chunk falls out of the per-token context length.

use rayon::prelude::*;

use super::simd;

/// Where the cache of one layer lives and how it is paged.
#[derive(Clone, Copy)]
pub struct PagedLayer<'a> {
    pub k: &'a [f32], // [num_blocks, block_size, num_kv_heads, head_dim]
    pub v: &'a [f32], // [num_blocks, block_size, num_kv_heads, head_dim]
    pub block_size: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

/// Per-token view of the batch: which sequence a token belongs to and its position.
pub struct TokenContext<'a> {
    pub token_seq: &'a [u32],          // [tokens]: index into block_tables
    pub token_pos: &'a [u32],          // [tokens]: position; attends to 0..=pos
    pub block_tables: &'a [&'a [u32]], // [seqs][logical block] -> physical block
}

pub fn paged_attention_forward(
    out: &mut [f32], // [tokens, num_heads, head_dim]
    q: &[f32],       // [tokens, num_heads, head_dim]
    cache: PagedLayer<'_>,
    ctx: &TokenContext<'_>,
    num_heads: usize,
) {
    let hd = cache.head_dim;
    let group = num_heads / cache.num_kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    out.par_chunks_mut(hd)
        .zip(q.par_chunks(hd))
        .enumerate()
        .for_each_init(Vec::new, |scores: &mut Vec<f32>, (idx, (o, qh))| {
            let (t, h) = (idx / num_heads, idx % num_heads);
            let kv_head = h / group;
            let table = ctx.block_tables[ctx.token_seq[t] as usize];
            let len = ctx.token_pos[t] as usize + 1;
            let offset = |j: usize| {
                let block = table[j / cache.block_size] as usize;
                ((block * cache.block_size + j % cache.block_size) * cache.num_kv_heads + kv_head)
                    * hd
            };
            scores.clear();
            let mut max = f32::NEG_INFINITY;
            for j in 0..len {
                let k0 = offset(j);
                let s = simd::dot(qh, &cache.k[k0..k0 + hd]) * scale;
                max = max.max(s);
                scores.push(s);
            }
            let mut sum = 0f32;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            o.fill(0.0);
            for (j, p) in scores.iter().enumerate() {
                let v0 = offset(j);
                simd::axpy(o, *p / sum, &cache.v[v0..v0 + hd]);
            }
        });
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
