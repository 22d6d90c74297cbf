//! Attention over contiguous buffers for the One2Set generator (no paged cache: its sequences are
//! short and decoded in lock step):
//!
//! - [`segment_attention_forward`]: block-diagonal, unmasked attention. A segment's queries attend
//!   to all keys of its segment: the encoder's self-attention (each document over its own tokens,
//!   documents packed without padding) and the decoder's cross-attention (all slots of a document
//!   over that document's encoder output). It can also return the probabilities of head 0, which are
//!   One2Set's copy distribution.
//! - [`slot_attention_forward`]: the decoder's self-attention during greedy decoding. Each slot keeps
//!   its own keys and values, `[slots, max_len, dim]`; at step t a slot's query attends to its keys
//!   0..=t, which is the block-diagonal causal mask of jiacheng-ye/kg_one2set
//!   (`_get_self_attn_mask`) without computing the masked blocks.
//!
//! Scores are q·k / sqrt(head_dim) and softmax runs in f32 with [`simd::exp_fast`]; the
//! `*_reference` functions are the f64 specification the tests hold these to.

use rayon::prelude::*;

use super::gemm::{gemm_f32, Strides};

use super::simd;

/// One block of the block-diagonal attention: queries `q_start..q_start + q_len` attend to keys
/// `k_start..k_start + k_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub q_start: usize,
    pub q_len: usize,
    pub k_start: usize,
    pub k_len: usize,
}

/// Where each segment's head-0 probabilities start in the `head0` buffer: segment after segment,
/// each `[q_len, k_len]` row-major. Returns the offsets and the total length.
pub fn head0_offsets(segments: &[Segment], offsets: &mut Vec<usize>) -> usize {
    offsets.clear();
    let mut at = 0;
    for s in segments {
        offsets.push(at);
        at += s.q_len * s.k_len;
    }
    at
}

/// Block-diagonal attention; with `head0`, also the attention probabilities of head 0.
#[allow(clippy::too_many_arguments)]
pub fn segment_attention_forward(
    out: &mut [f32],           // [q_rows, num_heads*head_dim]
    head0: Option<&mut [f32]>, // [Σ q_len·k_len], laid out as `head0_offsets` says
    q: &[f32],                 // [q_rows, num_heads*head_dim]
    k: &[f32],                 // [k_rows, num_heads*head_dim]
    v: &[f32],                 // [k_rows, num_heads*head_dim]
    segments: &[Segment],
    num_heads: usize,
    head_dim: usize,
    head0_at: &[usize], // [segments] from `head0_offsets` (may be empty without `head0`)
) {
    let (row, hd) = (num_heads * head_dim, head_dim);
    check_segments(out, q, k, v, segments, row);
    let scale = 1.0 / (hd as f32).sqrt();
    let head0_addr = head0.map(|h| {
        let total: usize = segments.iter().map(|s| s.q_len * s.k_len).sum();
        assert!(
            h.len() >= total,
            "segment attention: head0 buffer too small"
        );
        assert_eq!(
            head0_at.len(),
            segments.len(),
            "segment attention: head0 offsets"
        );
        h.as_mut_ptr() as usize
    });
    let out_addr = out.as_mut_ptr() as usize;
    (0..segments.len() * num_heads)
        .into_par_iter()
        .for_each_init(Vec::new, |scores: &mut Vec<f32>, task| {
            let (s, h) = (task / num_heads, task % num_heads);
            let seg = segments[s];
            if seg.q_len == 0 {
                return;
            }
            scores.resize(seg.q_len * seg.k_len, 0.0); // [q_len, k_len]
            if seg.k_len == 0 {
                // Nothing to attend to: the output is zero (never happens for real documents).
                for i in 0..seg.q_len {
                    // SAFETY: row q_start + i, head h of `out` belongs to this task alone
                    // (segments' query ranges are disjoint, checked by check_segments).
                    unsafe {
                        let dst = (out_addr as *mut f32).add((seg.q_start + i) * row + h * hd);
                        std::slice::from_raw_parts_mut(dst, hd).fill(0.0);
                    }
                }
                return;
            }
            // SAFETY: scores is [q_len, k_len] row-major, i.e. a (k_len × q_len) column-major
            // destination with column stride k_len. lhs = K_h is (k_len × hd) with row stride
            // `row`, starting at k[k_start·row + h·hd]; its last element (k_start + k_len - 1)·row
            // + h·hd + hd - 1 is inside k (check_segments). rhs = Q_hᵀ is (hd × q_len) with column
            // stride `row`, inside q likewise. scores is owned by this task.
            unsafe {
                gemm_f32(
                    seg.k_len,
                    seg.q_len,
                    hd,
                    scores.as_mut_ptr(),
                    Strides {
                        row: 1,
                        col: seg.k_len as isize,
                    },
                    k.as_ptr().add(seg.k_start * row + h * hd),
                    Strides {
                        row: row as isize,
                        col: 1,
                    },
                    q.as_ptr().add(seg.q_start * row + h * hd),
                    Strides {
                        row: 1,
                        col: row as isize,
                    },
                    scale,
                );
            }
            for r in scores.chunks_mut(seg.k_len) {
                simd::softmax_in_place(r);
            }
            if h == 0 {
                if let Some(addr) = head0_addr {
                    // SAFETY: segment s's head-0 block, [q_len·k_len] at head0_at[s], is written by
                    // the task (s, 0) alone; the buffer holds every block (asserted above).
                    unsafe {
                        let dst = (addr as *mut f32).add(head0_at[s]);
                        std::slice::from_raw_parts_mut(dst, scores.len()).copy_from_slice(scores);
                    }
                }
            }
            // SAFETY: the destination is out[q_start + i][h·hd .. h·hd + hd] for i < q_len, an
            // (hd × q_len) column-major block with column stride `row`, written by this (segment,
            // head) task alone since segments' query ranges are disjoint. lhs = V_hᵀ is
            // (hd × k_len) with column stride `row` inside v; rhs = Pᵀ is (k_len × q_len) with
            // column stride k_len, the scores buffer.
            unsafe {
                gemm_f32(
                    hd,
                    seg.q_len,
                    seg.k_len,
                    (out_addr as *mut f32).add(seg.q_start * row + h * hd),
                    Strides {
                        row: 1,
                        col: row as isize,
                    },
                    v.as_ptr().add(seg.k_start * row + h * hd),
                    Strides {
                        row: 1,
                        col: row as isize,
                    },
                    scores.as_ptr(),
                    Strides {
                        row: 1,
                        col: seg.k_len as isize,
                    },
                    1.0,
                );
            }
        });
}

/// Bounds and disjointness that the unsafe writes rely on.
fn check_segments(out: &[f32], q: &[f32], k: &[f32], v: &[f32], segments: &[Segment], row: usize) {
    assert_eq!(
        out.len(),
        q.len(),
        "segment attention: out is not shaped as q"
    );
    assert_eq!(
        k.len(),
        v.len(),
        "segment attention: k and v differ in shape"
    );
    let mut q_end = 0;
    for s in segments {
        assert!(
            s.q_start >= q_end,
            "segment attention: query ranges overlap or are unsorted"
        );
        q_end = s.q_start + s.q_len;
        assert!(
            q_end * row <= q.len(),
            "segment attention: queries past the end of q"
        );
        assert!(
            (s.k_start + s.k_len) * row <= k.len(),
            "segment attention: keys past the end of k"
        );
    }
}

/// The specification of [`segment_attention_forward`]: plain loops, f64 softmax.
#[allow(clippy::too_many_arguments)]
pub fn segment_attention_reference(
    out: &mut [f32],      // [q_rows, num_heads*head_dim]
    head0: &mut Vec<f32>, // [Σ q_len·k_len], segment after segment
    q: &[f32],
    k: &[f32],
    v: &[f32],
    segments: &[Segment],
    num_heads: usize,
    head_dim: usize,
) {
    let (row, hd) = (num_heads * head_dim, head_dim);
    head0.clear();
    for seg in segments {
        for h in 0..num_heads {
            for i in 0..seg.q_len {
                let qi = &q[(seg.q_start + i) * row + h * hd..][..hd];
                let scores: Vec<f64> = (0..seg.k_len)
                    .map(|j| {
                        let kj = &k[(seg.k_start + j) * row + h * hd..][..hd];
                        qi.iter()
                            .zip(kj)
                            .map(|(a, b)| *a as f64 * *b as f64)
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let p = softmax_f64(&scores);
                if h == 0 {
                    head0.extend(p.iter().map(|&x| x as f32));
                }
                for c in 0..hd {
                    let acc: f64 = (0..seg.k_len)
                        .map(|j| p[j] * v[(seg.k_start + j) * row + h * hd + c] as f64)
                        .sum();
                    out[(seg.q_start + i) * row + h * hd + c] = acc as f32;
                }
            }
        }
    }
}

fn softmax_f64(s: &[f64]) -> Vec<f64> {
    let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|x| x / sum).collect()
}

/// Per-slot key/value buffers of one decoder layer, for slot attention.
#[derive(Clone, Copy)]
pub struct SlotCache<'a> {
    pub k: &'a [f32], // [slots, max_len, num_heads*head_dim]
    pub v: &'a [f32], // [slots, max_len, num_heads*head_dim]
    pub max_len: usize,
}

/// Rows per parallel task of slot attention.
const SLOT_ROWS_PER_TASK: usize = 8;

/// Step `len - 1` of every listed slot: query row r attends to keys 0..len of slot `row_slot[r]`.
pub fn slot_attention_forward(
    out: &mut [f32], // [rows, num_heads*head_dim]
    q: &[f32],       // [rows, num_heads*head_dim]
    cache: SlotCache<'_>,
    row_slot: &[u32], // [rows]
    len: usize,
    num_heads: usize,
) {
    let rows = row_slot.len();
    assert_eq!(q.len(), out.len(), "slot attention: out is not shaped as q");
    if rows == 0 {
        return;
    }
    let row = q.len() / rows;
    assert_eq!(q.len(), rows * row, "slot attention: q is not [rows, dim]");
    assert!(
        len >= 1 && len <= cache.max_len,
        "slot attention: len outside 1..=max_len"
    );
    let slots = cache.k.len() / (cache.max_len * row);
    assert_eq!(
        cache.k.len(),
        slots * cache.max_len * row,
        "slot attention: k cache shape"
    );
    assert_eq!(
        cache.v.len(),
        cache.k.len(),
        "slot attention: v cache shape"
    );
    assert!(
        row_slot.iter().all(|&s| (s as usize) < slots),
        "slot attention: slot index past the cache"
    );
    let hd = row / num_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    out.par_chunks_mut(SLOT_ROWS_PER_TASK * row)
        .zip(q.par_chunks(SLOT_ROWS_PER_TASK * row))
        .zip(row_slot.par_chunks(SLOT_ROWS_PER_TASK))
        .for_each(|((out, q), slots)| {
            let mut scores = [0f32; 64];
            let mut scores_vec = Vec::new();
            let scores: &mut [f32] = if len <= scores.len() {
                &mut scores[..len]
            } else {
                scores_vec.resize(len, 0.0);
                &mut scores_vec
            };
            for ((o, qr), &slot) in out.chunks_mut(row).zip(q.chunks(row)).zip(slots) {
                let base = slot as usize * cache.max_len * row;
                for h in 0..num_heads {
                    let qh = &qr[h * hd..(h + 1) * hd];
                    for (j, s) in scores.iter_mut().enumerate() {
                        let at = base + j * row + h * hd;
                        *s = simd::dot(qh, &cache.k[at..at + hd]) * scale;
                    }
                    simd::softmax_in_place(scores);
                    let oh = &mut o[h * hd..(h + 1) * hd];
                    oh.fill(0.0);
                    for (j, &p) in scores.iter().enumerate() {
                        let at = base + j * row + h * hd;
                        simd::axpy(oh, p, &cache.v[at..at + hd]);
                    }
                }
            }
        });
}

/// The specification of [`slot_attention_forward`]: plain loops, f64 softmax.
pub fn slot_attention_reference(
    out: &mut [f32],
    q: &[f32],
    cache: SlotCache<'_>,
    row_slot: &[u32],
    len: usize,
    num_heads: usize,
) {
    let rows = row_slot.len();
    let row = q.len() / rows.max(1);
    let hd = row / num_heads;
    for (r, &slot) in row_slot.iter().enumerate() {
        let base = slot as usize * cache.max_len * row;
        for h in 0..num_heads {
            let qh = &q[r * row + h * hd..][..hd];
            let scores: Vec<f64> = (0..len)
                .map(|j| {
                    let kj = &cache.k[base + j * row + h * hd..][..hd];
                    qh.iter()
                        .zip(kj)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum::<f64>()
                        / (hd as f64).sqrt()
                })
                .collect();
            let p = softmax_f64(&scores);
            for c in 0..hd {
                let acc: f64 = (0..len)
                    .map(|j| p[j] * cache.v[base + j * row + h * hd + c] as f64)
                    .sum();
                out[r * row + h * hd + c] = acc as f32;
            }
        }
    }
}
