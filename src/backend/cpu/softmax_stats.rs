//! Softmax statistics of many rows of vocabulary logits at once, read from the transposed logits
//! `[vocab, rows]` that [`super::linear::linear_forward_transposed`] leaves: for every row its
//! largest logit, the first index holding it, and `Σ exp(logit - max)`. That is all the One2Set
//! generator's greedy step needs from the vocabulary distribution (the copy mechanism adds mass only
//! to source words, which it reads one by one), so no probability row is ever written.
//!
//! In this layout each vocabulary id is a contiguous run of `rows` values, so the loops vectorise
//! across rows. The vocabulary is split into one range per task; each task walks its range in
//! blocks small enough to stay in cache, taking the block's maxima first and then its exponentials
//! (one exp per logit, with the running sum rescaled once per block), and the tasks' partial
//! results are merged as in online softmax (Milakov & Gimelshein 2018).

use rayon::prelude::*;

use super::simd;

/// Vocabulary ids per cache block of a task.
const BLOCK_IDS: usize = 32;
/// Tasks per thread.
const TASKS_PER_THREAD: usize = 4;

/// Per-row statistics, and the tasks' partial ones.
#[derive(Default)]
pub struct SoftmaxStats {
    pub max: Vec<f32>,    // [rows]
    pub argmax: Vec<u32>, // [rows]
    pub sum: Vec<f32>,    // [rows] Σ exp(x - max)
    part_max: Vec<f32>,   // [tasks, rows]
    part_arg: Vec<u32>,   // [tasks, rows]
    part_sum: Vec<f32>,   // [tasks, rows]
}

impl SoftmaxStats {
    /// Computes the statistics of every row of `x_t` ([vocab, rows]).
    pub fn compute(&mut self, x_t: &[f32], rows: usize) {
        assert!(
            rows > 0 && x_t.len().is_multiple_of(rows),
            "softmax stats: x_t is not [vocab, rows]"
        );
        let vocab = x_t.len() / rows;
        assert!(vocab > 0, "softmax stats: empty vocabulary");
        let tasks = (TASKS_PER_THREAD * rayon::current_num_threads()).clamp(1, vocab);
        let per_task = vocab.div_ceil(tasks);
        let tasks = vocab.div_ceil(per_task);
        for buf in [&mut self.part_max, &mut self.part_sum] {
            buf.clear();
            buf.resize(tasks * rows, 0.0);
        }
        self.part_arg.clear();
        self.part_arg.resize(tasks * rows, 0);
        self.part_max
            .par_chunks_mut(rows)
            .zip(self.part_arg.par_chunks_mut(rows))
            .zip(self.part_sum.par_chunks_mut(rows))
            .zip(x_t.par_chunks(per_task * rows))
            .enumerate()
            .for_each(|(task, (((m, a), s), x))| {
                range_stats(x, rows, (task * per_task) as u32, m, a, s);
            });
        self.max.clear();
        self.max.resize(rows, f32::NEG_INFINITY);
        self.argmax.clear();
        self.argmax.resize(rows, 0);
        self.sum.clear();
        self.sum.resize(rows, 0.0);
        // Tasks are in id order: a later task takes over only with a strictly larger maximum.
        for t in 0..tasks {
            for r in 0..rows {
                let m = self.part_max[t * rows + r];
                if m > self.max[r] {
                    self.max[r] = m;
                    self.argmax[r] = self.part_arg[t * rows + r];
                }
            }
        }
        for t in 0..tasks {
            for r in 0..rows {
                let m = self.part_max[t * rows + r];
                self.sum[r] += self.part_sum[t * rows + r] * (m - self.max[r]).exp();
            }
        }
    }
}

/// Statistics of one contiguous range of ids (`x`: [ids, rows], the first id being `first`).
fn range_stats(x: &[f32], rows: usize, first: u32, m: &mut [f32], a: &mut [u32], s: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            return unsafe { range_stats_avx512(x, rows, first, m, a, s) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            return unsafe { range_stats_avx2(x, rows, first, m, a, s) };
        }
    }
    range_stats_body(x, rows, first, m, a, s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn range_stats_avx512(
    x: &[f32],
    rows: usize,
    first: u32,
    m: &mut [f32],
    a: &mut [u32],
    s: &mut [f32],
) {
    range_stats_body(x, rows, first, m, a, s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn range_stats_avx2(
    x: &[f32],
    rows: usize,
    first: u32,
    m: &mut [f32],
    a: &mut [u32],
    s: &mut [f32],
) {
    range_stats_body(x, rows, first, m, a, s)
}

#[inline(always)]
fn range_stats_body(
    x: &[f32], // [ids, rows]
    rows: usize,
    first: u32,
    m: &mut [f32], // [rows]
    a: &mut [u32], // [rows]
    s: &mut [f32], // [rows]
) {
    m.fill(f32::NEG_INFINITY);
    a.fill(first);
    s.fill(0.0);
    let mut block_max = vec![0f32; rows];
    for (b, block) in x.chunks(BLOCK_IDS * rows).enumerate() {
        block_max.copy_from_slice(m);
        for (i, row) in block.chunks_exact(rows).enumerate() {
            let id = first + (b * BLOCK_IDS + i) as u32;
            for ((bm, ar), &v) in block_max.iter_mut().zip(a.iter_mut()).zip(row) {
                let gt = v > *bm;
                *bm = if gt { v } else { *bm };
                *ar = if gt { id } else { *ar };
            }
        }
        // Rescale the running sums to the new maxima (exp(-inf) = 0 on the first block).
        for ((sr, mr), &bm) in s.iter_mut().zip(m.iter_mut()).zip(&block_max) {
            *sr *= simd::exp_fast(*mr - bm);
            *mr = bm;
        }
        for row in block.chunks_exact(rows) {
            for ((sr, &mr), &v) in s.iter_mut().zip(m.iter()).zip(row) {
                *sr += simd::exp_fast(v - mr);
            }
        }
    }
}

/// The specification: per row, f64 max, first argmax and sum of exponentials.
pub fn softmax_stats_reference(x_t: &[f32], rows: usize) -> (Vec<f32>, Vec<u32>, Vec<f64>) {
    let vocab = x_t.len() / rows;
    let mut max = vec![f32::NEG_INFINITY; rows];
    let mut arg = vec![0u32; rows];
    for o in 0..vocab {
        for r in 0..rows {
            if x_t[o * rows + r] > max[r] {
                max[r] = x_t[o * rows + r];
                arg[r] = o as u32;
            }
        }
    }
    let sum = (0..rows)
        .map(|r| {
            (0..vocab)
                .map(|o| (x_t[o * rows + r] as f64 - max[r] as f64).exp())
                .sum()
        })
        .collect();
    (max, arg, sum)
}
