//! Fused causal attention over the paged KV cache on the GPU (`kernels/paged_attention.cu`): query
//! chunks of any length (a prefill chunk, a forced-text chunk, one decode token) with grouped-query
//! attention, online softmax in f32 over bf16 storage, and flash-decoding's split-KV for long
//! contexts (Dao et al., "Flash-Decoding for long-context inference", 2023; vLLM's paged attention
//! v2). The CPU twin, and the specification, is
//! [`paged_attention_forward`](crate::backend::cpu::attention::paged_attention_forward).
//!
//! The host picks a launch plan from the shape alone (the token → sequence map stays on the
//! device): how many query heads and tokens one CTA serves, and how many KV splits fill the GPU.

use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{CudaView, CudaViewMut, DevicePtr, LaunchConfig, PushKernelArg};
use half::bf16;

use crate::backend::cuda::device::{CudaDevice, CudaResultExt};
use crate::backend::cuda::scratch::Scratch;
use crate::error::{KpgError, Result};

const OP: &str = "paged_attention_bf16";
const OP_NAIVE: &str = "paged_attention_naive_bf16";

/// Threads per CTA of the fast kernel (`NUM_THREADS` in the .cu file).
const FAST_THREADS: u32 = 128;
/// Most query rows (tokens × heads of one GQA group) one CTA serves: registers hold 8 f32 of q and
/// 8 of the accumulator per row and lane.
const MAX_ROWS: usize = 8;
/// Fewest keys a KV split covers, so that a split's fixed cost (its partial written and merged)
/// stays small beside reading its keys.
const MIN_PARTITION: usize = 128;
/// Auto split aims at this many CTAs per SM: enough that the last wave is not a long tail.
const CTAS_PER_SM: usize = 4;
/// Largest head_dim (the kernels' widest bucket).
pub const MAX_HEAD_DIM: usize = 256;

/// The fast kernels by (head_dim bucket, rows per CTA).
const FAST_KERNELS: [[&str; 4]; 4] = [
    [
        "paged_attention_bf16_d32_r1",
        "paged_attention_bf16_d32_r2",
        "paged_attention_bf16_d32_r4",
        "paged_attention_bf16_d32_r8",
    ],
    [
        "paged_attention_bf16_d64_r1",
        "paged_attention_bf16_d64_r2",
        "paged_attention_bf16_d64_r4",
        "paged_attention_bf16_d64_r8",
    ],
    [
        "paged_attention_bf16_d128_r1",
        "paged_attention_bf16_d128_r2",
        "paged_attention_bf16_d128_r4",
        "paged_attention_bf16_d128_r8",
    ],
    [
        "paged_attention_bf16_d256_r1",
        "paged_attention_bf16_d256_r2",
        "paged_attention_bf16_d256_r4",
        "paged_attention_bf16_d256_r8",
    ],
];

/// The sizes of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    pub num_tokens: usize,
    pub num_seqs: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub block_size: usize,
    pub max_blocks_per_seq: usize, // row length of block_tables
    pub max_context: usize,        // longest token_pos + 1 in the batch (for split decisions)
}

/// How the fast path divides a long context among CTAs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SplitKv {
    /// Split when the batch alone gives too few CTAs to fill the GPU.
    #[default]
    Auto,
    /// One CTA reads a sequence's whole context (no partials, no merge kernel).
    Never,
    /// Splits of this many keys whenever the context is longer (tests force the merge this way).
    Partition(usize),
}

/// How the fast kernel is launched for one shape; a pure function of the shape, so that it is
/// tested on machines without a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchPlan {
    pub head_dim_bucket: usize, // 32, 64, 128 or 256: head_dim rounded up
    pub rows: usize,            // query rows per CTA: 1, 2, 4 or 8 (>= rows_h · tile_tokens)
    pub rows_h: usize,          // query heads per CTA, all of one GQA group
    pub head_chunks: usize,     // CTAs that share a GQA group: ceil(group / rows_h)
    pub tile_tokens: usize,     // consecutive tokens per CTA
    pub partition: usize,       // keys per KV split (max_context when not split)
    pub num_splits: usize,
    pub grid: (u32, u32, u32), // (token tiles, num_kv_heads · head_chunks, num_splits)
}

impl LaunchPlan {
    pub fn kernel_name(&self) -> &'static str {
        let d = self.head_dim_bucket.trailing_zeros() as usize - 5;
        let r = self.rows.trailing_zeros() as usize;
        FAST_KERNELS[d][r]
    }
}

fn shape_err(op: &'static str, expected: impl Into<String>, got: impl Into<String>) -> KpgError {
    KpgError::Shape {
        op,
        expected: expected.into(),
        got: got.into(),
    }
}

/// Buffer lengths (in elements) handed to one call.
#[derive(Debug, Clone, Copy)]
pub struct BufferLens {
    pub out: usize,
    pub q: usize,
    pub k_cache: usize,
    pub v_cache: usize,
    pub token_seq: usize,
    pub token_pos: usize,
    pub block_tables: usize,
}

/// Checks the shape and the buffer lengths; returns the number of physical cache blocks.
pub fn validate(op: &'static str, s: &AttentionShape, lens: &BufferLens) -> Result<usize> {
    if s.num_heads == 0 || s.num_kv_heads == 0 || !s.num_heads.is_multiple_of(s.num_kv_heads) {
        return Err(shape_err(
            op,
            "num_heads a positive multiple of num_kv_heads",
            format!("{} heads, {} kv heads", s.num_heads, s.num_kv_heads),
        ));
    }
    if s.head_dim == 0 || !s.head_dim.is_multiple_of(2) || s.head_dim > MAX_HEAD_DIM {
        return Err(shape_err(
            op,
            format!("an even head_dim from 2 to {MAX_HEAD_DIM}"),
            s.head_dim.to_string(),
        ));
    }
    if s.block_size == 0 || s.max_blocks_per_seq == 0 || s.max_context == 0 {
        return Err(shape_err(
            op,
            "positive block_size, max_blocks_per_seq and max_context",
            format!(
                "block_size {}, max_blocks_per_seq {}, max_context {}",
                s.block_size, s.max_blocks_per_seq, s.max_context
            ),
        ));
    }
    let capacity = s.max_blocks_per_seq.checked_mul(s.block_size);
    if capacity.is_none_or(|c| s.max_context > c) {
        return Err(shape_err(
            op,
            format!(
                "max_context at most max_blocks_per_seq · block_size = {} · {}",
                s.max_blocks_per_seq, s.block_size
            ),
            s.max_context.to_string(),
        ));
    }
    // The kernels index with 32-bit ints inside a sequence and a tile; 2^30 leaves headroom for
    // `split · partition + partition`.
    let limit = 1usize << 30;
    for (what, v) in [
        ("num_tokens", s.num_tokens),
        ("num_seqs", s.num_seqs),
        ("num_heads", s.num_heads),
        ("block_size", s.block_size),
        ("max_blocks_per_seq", s.max_blocks_per_seq),
        ("max_context", s.max_context),
    ] {
        if v > limit {
            return Err(shape_err(op, format!("{what} below 2^30"), v.to_string()));
        }
    }
    // The merge and naive kernels put heads on grid y.
    if s.num_heads > 65_535 {
        return Err(shape_err(
            op,
            "at most 65535 heads (grid y)",
            s.num_heads.to_string(),
        ));
    }
    if s.num_tokens > 0 && s.num_seqs == 0 {
        return Err(shape_err(op, "at least one sequence", "num_seqs 0"));
    }
    let row = s.num_heads * s.head_dim;
    let need = |what: &str, need: usize, got: usize| -> Result<()> {
        if got < need {
            return Err(shape_err(
                op,
                format!("{what} of at least {need} elements"),
                got.to_string(),
            ));
        }
        Ok(())
    };
    need(
        "out [num_tokens, num_heads · head_dim]",
        s.num_tokens * row,
        lens.out,
    )?;
    need(
        "q [num_tokens, num_heads · head_dim]",
        s.num_tokens * row,
        lens.q,
    )?;
    need("token_seq [num_tokens]", s.num_tokens, lens.token_seq)?;
    need("token_pos [num_tokens]", s.num_tokens, lens.token_pos)?;
    need(
        "block_tables [num_seqs, max_blocks_per_seq]",
        s.num_seqs * s.max_blocks_per_seq,
        lens.block_tables,
    )?;
    let block_elems = s.block_size * s.num_kv_heads * s.head_dim;
    if lens.k_cache != lens.v_cache
        || !lens.k_cache.is_multiple_of(block_elems)
        || lens.k_cache == 0
    {
        return Err(shape_err(
            op,
            format!(
                "k_cache and v_cache of equal length, whole blocks of {} · {} · {} elements",
                s.block_size, s.num_kv_heads, s.head_dim
            ),
            format!("k_cache {}, v_cache {}", lens.k_cache, lens.v_cache),
        ));
    }
    let num_blocks = lens.k_cache / block_elems;
    if num_blocks > i32::MAX as usize {
        return Err(shape_err(
            op,
            "fewer than 2^31 cache blocks",
            num_blocks.to_string(),
        ));
    }
    Ok(num_blocks)
}

/// Whether the 16-byte load path applies (head_dim a multiple of 8 and every bf16 buffer 16-byte
/// aligned); an error when a buffer is not even 4-byte aligned (a view at an odd element offset),
/// which the 4-byte path needs.
pub fn vector_loads(op: &'static str, head_dim: usize, bf16_ptrs: &[u64]) -> Result<bool> {
    if let Some(p) = bf16_ptrs.iter().find(|&&p| p % 4 != 0) {
        return Err(shape_err(
            op,
            "q, out and the caches 4-byte aligned (views at even element offsets)",
            format!("a buffer at {p:#x}"),
        ));
    }
    Ok(head_dim.is_multiple_of(8) && bf16_ptrs.iter().all(|&p| p % 16 == 0))
}

/// The launch plan of the fast kernel for a validated shape on a GPU of `num_sms` SMs.
pub fn plan(s: &AttentionShape, num_sms: usize, split: SplitKv) -> Result<LaunchPlan> {
    let head_dim_bucket = s.head_dim.next_power_of_two().max(32);
    let group = s.num_heads / s.num_kv_heads;
    let rows_h = group.min(MAX_ROWS);
    let head_chunks = group.div_ceil(rows_h);
    // Several tokens per CTA when sequences bring several (prefill, forced text), so that a key is
    // read once for all of them; one for a decode batch, where each token has its own sequence.
    let per_seq = (s.num_tokens / s.num_seqs.max(1)).max(1);
    let max_tile = MAX_ROWS / rows_h;
    let tile_tokens = prev_power_of_two(per_seq.min(max_tile));
    let rows = (rows_h * tile_tokens).next_power_of_two();
    let tiles = s.num_tokens.div_ceil(tile_tokens).max(1);
    let ctas = tiles * s.num_kv_heads * head_chunks;
    let partition = match split {
        SplitKv::Never => s.max_context,
        SplitKv::Partition(0) => {
            return Err(shape_err(OP, "a positive split partition", "0"));
        }
        SplitKv::Partition(p) => p.min(s.max_context),
        SplitKv::Auto => {
            let target = CTAS_PER_SM * num_sms.max(1);
            if ctas >= target || s.max_context <= MIN_PARTITION {
                s.max_context
            } else {
                let splits = target.div_ceil(ctas);
                s.max_context
                    .div_ceil(splits)
                    .next_multiple_of(64)
                    .max(MIN_PARTITION)
                    .min(s.max_context)
            }
        }
    };
    let num_splits = s.max_context.div_ceil(partition);
    let y = s.num_kv_heads * head_chunks;
    if y > 65_535 || num_splits > 65_535 || tiles > i32::MAX as usize {
        return Err(shape_err(
            OP,
            "a grid within CUDA's limits (y and z at most 65535)",
            format!("{tiles} x {y} x {num_splits} CTAs"),
        ));
    }
    Ok(LaunchPlan {
        head_dim_bucket,
        rows,
        rows_h,
        head_chunks,
        tile_tokens,
        partition,
        num_splits,
        grid: (tiles as u32, y as u32, num_splits as u32),
    })
}

fn prev_power_of_two(n: usize) -> usize {
    1 << (usize::BITS - 1 - n.max(1).leading_zeros())
}

fn i32_arg(v: usize) -> i32 {
    // Every size was checked below 2^30 (or 2^31 for num_blocks) by `validate`.
    v as i32
}

/// Holds the split-KV partial results between the attention kernel and the merge.
pub struct PagedAttention {
    split: SplitKv,
    num_sms: Option<usize>,
    part_ml: Scratch<f32>, // [num_tokens, num_heads, num_splits, 2]: (max, sum) in base 2
    part_acc: Scratch<f32>, // [num_tokens, num_heads, num_splits, head_dim]: unnormalised
}

impl Default for PagedAttention {
    fn default() -> Self {
        Self::new()
    }
}

impl PagedAttention {
    pub fn new() -> Self {
        PagedAttention {
            split: SplitKv::Auto,
            num_sms: None,
            part_ml: Scratch::new("attention split partials (max, sum)"),
            part_acc: Scratch::new("attention split partials (acc)"),
        }
    }

    /// Chooses how long contexts are split (tests and benchmarks; the default is `Auto`).
    pub fn set_split(&mut self, split: SplitKv) {
        self.split = split;
    }

    fn num_sms(&mut self, dev: &CudaDevice) -> Result<usize> {
        if let Some(n) = self.num_sms {
            return Ok(n);
        }
        let n = dev
            .stream()
            .context()
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .during(|| "reading the number of SMs".into())?;
        let n = n.max(1) as usize;
        self.num_sms = Some(n);
        Ok(n)
    }

    /// The launch plan `forward` would use for `shape` on `dev`.
    pub fn plan_for(&mut self, dev: &CudaDevice, shape: &AttentionShape) -> Result<LaunchPlan> {
        let num_sms = self.num_sms(dev)?;
        plan(shape, num_sms, self.split)
    }

    /// `out[t, h] = softmax(q[t, h] · K[seq, 0..=pos]ᵀ / sqrt(head_dim)) · V[seq, 0..=pos]` for
    /// every token t (sequence `token_seq[t]`, position `token_pos[t]`) and query head h, reading
    /// kv head `h / (num_heads / num_kv_heads)` through the block table. Positions past
    /// `max_context - 1` are clamped to it, and a token whose sequence is `>= num_seqs` is skipped
    /// (its output row is left as it was): device values cannot be checked on the host, but they
    /// never make the kernel read out of bounds.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &mut self,
        dev: &CudaDevice,
        out: &mut CudaViewMut<'_, bf16>, // [num_tokens, num_heads * head_dim]
        q: &CudaView<'_, bf16>,          // [num_tokens, num_heads * head_dim], RoPE applied
        k_cache: &CudaView<'_, bf16>,    // [num_blocks, block_size, num_kv_heads, head_dim]
        v_cache: &CudaView<'_, bf16>,    // same
        token_seq: &CudaView<'_, u32>,   // [num_tokens]
        token_pos: &CudaView<'_, u32>,   // [num_tokens]
        block_tables: &CudaView<'_, u32>, // [num_seqs, max_blocks_per_seq]
        shape: &AttentionShape,
    ) -> Result<()> {
        let s = shape;
        let num_blocks = validate(
            OP,
            s,
            &lens(out, q, k_cache, v_cache, token_seq, token_pos, block_tables),
        )?;
        if s.num_tokens == 0 {
            return Ok(());
        }
        let stream = dev.stream();
        let aligned = vector_loads(
            OP,
            s.head_dim,
            &[
                out.device_ptr(stream).0,
                q.device_ptr(stream).0,
                k_cache.device_ptr(stream).0,
                v_cache.device_ptr(stream).0,
            ],
        )?;
        let plan = self.plan_for(dev, s)?;
        let partials = s.num_tokens * s.num_heads * plan.num_splits;
        let part_ml = self.part_ml.get(dev, partials * 2)?;
        let part_acc = self.part_acc.get(dev, partials * s.head_dim)?;

        let f = dev.function("paged_attention", plan.kernel_name())?;
        let args = [
            s.num_tokens,
            s.num_seqs,
            s.num_heads,
            s.num_kv_heads,
            s.head_dim,
            s.block_size,
        ]
        .map(i32_arg);
        let block_shift: i32 = if s.block_size.is_power_of_two() {
            s.block_size.trailing_zeros() as i32
        } else {
            -1
        };
        let more = [
            s.max_blocks_per_seq,
            num_blocks,
            s.max_context,
            plan.tile_tokens,
            plan.rows_h,
            plan.head_chunks,
            plan.partition,
            plan.num_splits,
        ]
        .map(i32_arg);
        let aligned_arg = i32::from(aligned);
        // log2(e) / sqrt(head_dim): the kernel's softmax is in base 2.
        let q_scale = std::f32::consts::LOG2_E / (s.head_dim as f32).sqrt();
        let mut l = stream.launch_builder(&f);
        l.arg(&mut *out)
            .arg(&mut *part_ml)
            .arg(&mut *part_acc)
            .arg(q)
            .arg(k_cache)
            .arg(v_cache)
            .arg(token_seq)
            .arg(token_pos)
            .arg(block_tables);
        for a in &args {
            l.arg(a);
        }
        l.arg(&block_shift);
        for a in &more {
            l.arg(a);
        }
        l.arg(&aligned_arg).arg(&q_scale);
        let cfg = LaunchConfig {
            grid_dim: plan.grid,
            block_dim: (FAST_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: `validate` checked every buffer against the shape (out and q hold num_tokens
        // rows, the caches whole blocks, block_tables num_seqs rows); the partial buffers hold
        // num_tokens · num_heads · num_splits entries; the kernel clamps device-side positions to
        // max_context - 1 (<= max_blocks_per_seq · block_size - 1) and physical blocks to
        // num_blocks, and skips sequences >= num_seqs; `aligned` is set only for 16-byte aligned
        // buffers and a head_dim that is a multiple of 8, and all are at least 4-byte aligned.
        unsafe { l.launch(cfg) }.during(|| {
            format!(
                "launching {} on {} tokens ({:?})",
                plan.kernel_name(),
                s.num_tokens,
                plan
            )
        })?;

        if plan.num_splits > 1 {
            let f = dev.function("paged_attention", "paged_attention_reduce_bf16")?;
            let sizes = [
                s.num_seqs,
                s.num_heads,
                s.head_dim,
                s.max_context,
                plan.partition,
                plan.num_splits,
            ]
            .map(i32_arg);
            let mut l = stream.launch_builder(&f);
            l.arg(&mut *out)
                .arg(&*part_ml)
                .arg(&*part_acc)
                .arg(token_seq)
                .arg(token_pos);
            for a in &sizes {
                l.arg(a);
            }
            let cfg = LaunchConfig {
                grid_dim: (s.num_tokens as u32, s.num_heads as u32, 1),
                block_dim: (128, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: the partials were written by the launch above for every (token, head,
            // split) that the merge reads (splits 0..=pos / partition, clamped as there); out holds
            // num_tokens · num_heads · head_dim elements; `validate` kept num_heads (grid y)
            // at most 65535.
            unsafe { l.launch(cfg) }.during(|| {
                format!(
                    "launching paged_attention_reduce_bf16 on {} tokens x {} splits",
                    s.num_tokens, plan.num_splits
                )
            })?;
        }
        Ok(())
    }

    /// The second reference: one warp per (token, head) walking the block table key by key.
    /// Same contract as [`forward`](Self::forward).
    #[allow(clippy::too_many_arguments)]
    pub fn forward_naive(
        &mut self,
        dev: &CudaDevice,
        out: &mut CudaViewMut<'_, bf16>, // [num_tokens, num_heads * head_dim]
        q: &CudaView<'_, bf16>,          // [num_tokens, num_heads * head_dim]
        k_cache: &CudaView<'_, bf16>,    // [num_blocks, block_size, num_kv_heads, head_dim]
        v_cache: &CudaView<'_, bf16>,    // same
        token_seq: &CudaView<'_, u32>,   // [num_tokens]
        token_pos: &CudaView<'_, u32>,   // [num_tokens]
        block_tables: &CudaView<'_, u32>, // [num_seqs, max_blocks_per_seq]
        shape: &AttentionShape,
    ) -> Result<()> {
        let s = shape;
        let num_blocks = validate(
            OP_NAIVE,
            s,
            &lens(out, q, k_cache, v_cache, token_seq, token_pos, block_tables),
        )?;
        if s.num_tokens == 0 {
            return Ok(());
        }
        let f = dev.function("paged_attention", "paged_attention_naive_bf16")?;
        let sizes = [
            s.num_seqs,
            s.num_heads,
            s.num_kv_heads,
            s.head_dim,
            s.block_size,
            s.max_blocks_per_seq,
            num_blocks,
            s.max_context,
        ]
        .map(i32_arg);
        let scale = 1.0 / (s.head_dim as f32).sqrt();
        let mut l = dev.stream().launch_builder(&f);
        l.arg(&mut *out)
            .arg(q)
            .arg(k_cache)
            .arg(v_cache)
            .arg(token_seq)
            .arg(token_pos)
            .arg(block_tables);
        for a in &sizes {
            l.arg(a);
        }
        l.arg(&scale);
        let cfg = LaunchConfig {
            grid_dim: (s.num_tokens as u32, s.num_heads as u32, 1),
            block_dim: (32, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: as for `forward`: buffers checked against the shape, device-side positions,
        // blocks and sequences clamped or skipped in the kernel; scalar loads need no alignment.
        unsafe { l.launch(cfg) }
            .during(|| format!("launching {OP_NAIVE} on {} tokens", s.num_tokens))?;
        Ok(())
    }
}

fn lens(
    out: &CudaViewMut<'_, bf16>,
    q: &CudaView<'_, bf16>,
    k_cache: &CudaView<'_, bf16>,
    v_cache: &CudaView<'_, bf16>,
    token_seq: &CudaView<'_, u32>,
    token_pos: &CudaView<'_, u32>,
    block_tables: &CudaView<'_, u32>,
) -> BufferLens {
    BufferLens {
        out: out.len(),
        q: q.len(),
        k_cache: k_cache.len(),
        v_cache: v_cache.len(),
        token_seq: token_seq.len(),
        token_pos: token_pos.len(),
        block_tables: block_tables.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llama(num_tokens: usize, num_seqs: usize, max_context: usize) -> AttentionShape {
        AttentionShape {
            num_tokens,
            num_seqs,
            num_heads: 32,
            num_kv_heads: 32,
            head_dim: 128,
            block_size: 16,
            max_blocks_per_seq: max_context.div_ceil(16),
            max_context,
        }
    }

    fn lens_for(s: &AttentionShape, num_blocks: usize) -> BufferLens {
        let row = s.num_heads * s.head_dim;
        let cache = num_blocks * s.block_size * s.num_kv_heads * s.head_dim;
        BufferLens {
            out: s.num_tokens * row,
            q: s.num_tokens * row,
            k_cache: cache,
            v_cache: cache,
            token_seq: s.num_tokens,
            token_pos: s.num_tokens,
            block_tables: s.num_seqs * s.max_blocks_per_seq,
        }
    }

    #[test]
    fn decode_at_batch_one_splits_to_fill_the_gpu() {
        let p = plan(&llama(1, 1, 4096), 132, SplitKv::Auto).unwrap();
        assert_eq!(
            (p.rows, p.rows_h, p.tile_tokens, p.head_dim_bucket),
            (1, 1, 1, 128)
        );
        assert_eq!(p.kernel_name(), "paged_attention_bf16_d128_r1");
        assert!(p.num_splits > 1 && p.partition >= MIN_PARTITION);
        assert_eq!(p.num_splits, 4096usize.div_ceil(p.partition));
        assert!(p.grid.0 as usize * 32 * p.num_splits >= 132 * 2);
    }

    #[test]
    fn large_decode_batches_and_short_contexts_do_not_split() {
        assert_eq!(
            plan(&llama(128, 128, 512), 132, SplitKv::Auto)
                .unwrap()
                .num_splits,
            1
        );
        let short = plan(&llama(1, 1, 100), 132, SplitKv::Auto).unwrap();
        assert_eq!((short.num_splits, short.partition), (1, 100));
        let never = plan(&llama(1, 1, 4096), 132, SplitKv::Never).unwrap();
        assert_eq!((never.num_splits, never.partition), (1, 4096));
    }

    #[test]
    fn forced_partitions_cover_the_context() {
        let p = plan(&llama(3, 3, 333), 132, SplitKv::Partition(64)).unwrap();
        assert_eq!((p.partition, p.num_splits, p.grid.2), (64, 6, 6));
        let whole = plan(&llama(3, 3, 333), 132, SplitKv::Partition(1000)).unwrap();
        assert_eq!((whole.partition, whole.num_splits), (333, 1));
        assert!(plan(&llama(3, 3, 333), 132, SplitKv::Partition(0)).is_err());
    }

    #[test]
    fn prefill_tiles_tokens_and_gqa_fills_rows() {
        // GQA 1 prefill: 8 tokens per CTA.
        let p = plan(&llama(512, 1, 512), 132, SplitKv::Auto).unwrap();
        assert_eq!((p.tile_tokens, p.rows_h, p.rows, p.grid.0), (8, 1, 8, 64));
        // GQA 8 decode: one token, the group's 8 heads.
        let mut s = llama(16, 16, 1024);
        s.num_kv_heads = 4;
        let p = plan(&s, 132, SplitKv::Auto).unwrap();
        assert_eq!(
            (p.tile_tokens, p.rows_h, p.rows, p.head_chunks, p.grid.1),
            (1, 8, 8, 1, 4)
        );
        // GQA 4 chunks of 3 tokens: 2 tokens x 4 heads.
        s.num_kv_heads = 8;
        s.num_tokens = 48;
        let p = plan(&s, 132, SplitKv::Auto).unwrap();
        assert_eq!((p.tile_tokens, p.rows_h, p.rows, p.grid.0), (2, 4, 8, 24));
        // GQA 16: two CTAs per group; GQA 3: rows padded to a power of two.
        s.num_kv_heads = 2;
        let p = plan(&s, 132, SplitKv::Auto).unwrap();
        assert_eq!(
            (p.rows_h, p.head_chunks, p.tile_tokens, p.grid.1),
            (8, 2, 1, 4)
        );
        s.num_heads = 6;
        let p = plan(&s, 132, SplitKv::Auto).unwrap();
        assert_eq!((p.rows_h, p.tile_tokens, p.rows), (3, 2, 8));
    }

    #[test]
    fn head_dims_pick_their_bucket() {
        for (hd, bucket) in [
            (2, 32),
            (32, 32),
            (34, 64),
            (64, 64),
            (80, 128),
            (128, 128),
            (256, 256),
        ] {
            let mut s = llama(1, 1, 10);
            s.head_dim = hd;
            assert_eq!(
                plan(&s, 132, SplitKv::Auto).unwrap().head_dim_bucket,
                bucket
            );
        }
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let s = llama(4, 2, 100);
        let ok = lens_for(&s, 20);
        assert_eq!(validate(OP, &s, &ok).unwrap(), 20);
        let bad = |s: AttentionShape, l: BufferLens| validate(OP, &s, &l).unwrap_err().to_string();
        assert!(bad(s, BufferLens { q: ok.q - 1, ..ok }).contains("q ["));
        assert!(bad(s, BufferLens { out: 3, ..ok }).contains("out ["));
        assert!(bad(s, BufferLens { token_pos: 3, ..ok }).contains("token_pos"));
        assert!(bad(
            s,
            BufferLens {
                block_tables: 7,
                ..ok
            }
        )
        .contains("block_tables"));
        assert!(bad(
            s,
            BufferLens {
                v_cache: ok.k_cache - 128,
                ..ok
            }
        )
        .contains("k_cache"));
        assert!(bad(
            s,
            BufferLens {
                k_cache: 5,
                v_cache: 5,
                ..ok
            }
        )
        .contains("whole blocks"));
        assert!(bad(AttentionShape { head_dim: 33, ..s }, ok).contains("even head_dim"));
        assert!(bad(AttentionShape { head_dim: 258, ..s }, ok).contains("even head_dim"));
        assert!(bad(
            AttentionShape {
                num_kv_heads: 5,
                ..s
            },
            ok
        )
        .contains("multiple"));
        assert!(bad(
            AttentionShape {
                max_context: 113,
                ..s
            },
            ok
        )
        .contains("max_context"));
        assert!(bad(AttentionShape { num_seqs: 0, ..s }, ok).contains("sequence"));
        assert!(bad(AttentionShape { block_size: 0, ..s }, ok).contains("block_size"));
        let many = AttentionShape {
            num_heads: 65_536 * 2,
            num_kv_heads: 2,
            ..s
        };
        assert!(bad(many, ok).contains("65535 heads"));
        // No tokens: nothing to check beyond the shape.
        let empty = AttentionShape { num_tokens: 0, ..s };
        assert!(validate(
            OP,
            &empty,
            &BufferLens {
                out: 0,
                q: 0,
                token_seq: 0,
                token_pos: 0,
                ..ok
            }
        )
        .is_ok());
    }

    #[test]
    fn vector_loads_need_multiples_of_8_and_16_byte_alignment() {
        assert!(vector_loads(OP, 128, &[0x1000, 0x2000]).unwrap());
        assert!(!vector_loads(OP, 80 + 2, &[0x1000]).unwrap());
        assert!(!vector_loads(OP, 128, &[0x1000, 0x2004]).unwrap());
        assert!(vector_loads(OP, 128, &[0x1002]).is_err());
    }

    #[test]
    fn every_planned_kernel_is_instantiated() {
        let source = include_str!("../../../kernels/paged_attention.cu");
        for (d, names) in [32, 64, 128, 256].iter().zip(FAST_KERNELS) {
            for (r, name) in [1, 2, 4, 8].iter().zip(names) {
                assert_eq!(*name, format!("paged_attention_bf16_d{d}_r{r}"));
                assert!(source.contains(&format!("PAGED_ATTENTION_ENTRY({d}, {r})")));
            }
        }
    }

    #[test]
    fn prev_power_of_two_rounds_down() {
        let got: Vec<usize> = [0, 1, 2, 3, 5, 8, 9].map(prev_power_of_two).to_vec();
        assert_eq!(got, [1, 1, 2, 2, 4, 8, 8]);
    }
}
