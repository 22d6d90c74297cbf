//! Launchers of the One2Set attention kernels: the encoder's block-diagonal self-attention
//! (`kernels/one2set_encoder_attention.cu`, WMMA), and the decoder's per-slot self-attention and
//! grouped cross-attention (`kernels/one2set_decode.cu`). CPU twins: `segment_attention_forward`
//! and `slot_attention_forward` in `backend::cpu::segment_attention`.

use cudarc::driver::sys::CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
use cudarc::driver::{CudaView, CudaViewMut, DevicePtr, LaunchConfig, PushKernelArg};
use half::bf16;

use crate::backend::cuda::device::{CudaDevice, CudaResultExt};
use crate::backend::cuda::one2set_layers::{int, need};
use crate::error::{KpgError, Result};

/// Queries one cross-attention block serves per pass over the keys (`MAX_GROUP` in the kernel).
pub const CROSS_MAX_GROUP: usize = 32;
/// Shared memory a cross-attention block may ask for: within what sm_80 and sm_90 grant.
const CROSS_MAX_SHARED: usize = 160 * 1024;
/// What a kernel gets without opting in.
const DEFAULT_SHARED: usize = 48 * 1024;

fn head_dim_error(op: &'static str, allowed: &str, head_dim: usize) -> KpgError {
    KpgError::Shape {
        op,
        expected: format!("head_dim {allowed} (the CUDA kernels' instantiations)"),
        got: head_dim.to_string(),
    }
}

/// The kernels read keys and values 16 bytes at a time (`int4`, eight bf16), which faults on a
/// buffer that is not 16-byte aligned: a view that starts at an element offset that is not a
/// multiple of 8. Allocations are aligned; such a view is refused here, by name, before launch.
/// (Rows stay aligned inside: every head_dim these kernels take is a multiple of 8.)
fn require_16_byte_aligned(
    dev: &CudaDevice,
    op: &'static str,
    name: &str,
    buf: &CudaView<'_, bf16>,
) -> Result<()> {
    let (ptr, _sync) = buf.device_ptr(dev.stream());
    if ptr % 16 != 0 {
        return Err(KpgError::Shape {
            op,
            expected: format!("`{name}` 16-byte aligned (a view at a multiple of 8 elements)"),
            got: format!("a buffer at {ptr:#x}"),
        });
    }
    Ok(())
}

/// The packed documents of a batch: `docs` documents, `tokens` in all, the longest `max_len`.
#[derive(Debug, Clone, Copy)]
pub struct PackedDocs {
    pub docs: usize,
    pub tokens: usize,
    pub max_len: usize,
}

/// Every document's tokens attend to all tokens of the same document (no mask inside). `doc_start`
/// and `doc_len` must describe disjoint ranges inside `tokens` (the caller builds them).
#[allow(clippy::too_many_arguments)]
pub fn encoder_attention_forward(
    dev: &CudaDevice,
    out: &mut CudaViewMut<'_, bf16>, // [tokens, num_heads*head_dim]
    qkv: &CudaView<'_, bf16>,        // [tokens, 3*num_heads*head_dim] q, k, v with biases
    doc_start: &CudaView<'_, i32>,   // [docs]
    doc_len: &CudaView<'_, i32>,     // [docs]
    packed: PackedDocs,
    num_heads: usize,
    head_dim: usize,
) -> Result<()> {
    const OP: &str = "one2set_encoder_attention";
    let name = match head_dim {
        16 => "one2set_encoder_attention_hd16_bf16",
        32 => "one2set_encoder_attention_hd32_bf16",
        64 => "one2set_encoder_attention_hd64_bf16",
        _ => return Err(head_dim_error(OP, "16, 32 or 64", head_dim)),
    };
    let d = num_heads * head_dim;
    need(OP, "out", packed.tokens * d, out.len())?;
    need(OP, "qkv", packed.tokens * 3 * d, qkv.len())?;
    need(OP, "doc_start", packed.docs, doc_start.len())?;
    need(OP, "doc_len", packed.docs, doc_len.len())?;
    if packed.docs == 0 || packed.max_len == 0 {
        return Ok(());
    }
    if packed.docs > 65_535 {
        // Documents are the grid's z dimension.
        return Err(KpgError::Shape {
            op: OP,
            expected: "at most 65535 documents per batch".into(),
            got: packed.docs.to_string(),
        });
    }
    require_16_byte_aligned(dev, OP, "qkv", qkv)?;
    let f = dev.function("one2set_encoder_attention", name)?;
    let heads_i = int(OP, num_heads)?;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let cfg = LaunchConfig {
        grid_dim: (
            packed.max_len.div_ceil(64) as u32,
            num_heads as u32,
            packed.docs as u32,
        ),
        block_dim: (128, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut l = dev.stream().launch_builder(&f);
    l.arg(out)
        .arg(qkv)
        .arg(doc_start)
        .arg(doc_len)
        .arg(&heads_i)
        .arg(&scale);
    // SAFETY: out and qkv hold `tokens` rows (checked above) and the caller's documents lie within
    // them; every block reads and writes only its own document's rows.
    unsafe { l.launch(cfg) }.during(|| {
        format!(
            "launching {name} on {} documents of up to {} tokens",
            packed.docs, packed.max_len
        )
    })?;
    Ok(())
}

/// Sizes of one decoding step's self-attention.
#[derive(Debug, Clone, Copy)]
pub struct SlotShape {
    pub rows: usize,
    /// Slots the caches hold.
    pub slots: usize,
    pub step: usize,
    pub max_len: usize,
    pub num_heads: usize,
    pub head_dim: usize,
}

/// Writes every row's key and value (biases added) into its slot's cache at `step`, and attends
/// over the slot's keys `0..=step`.
#[allow(clippy::too_many_arguments)]
pub fn slot_attention_forward(
    dev: &CudaDevice,
    out: &mut CudaViewMut<'_, bf16>,     // [rows, d]
    k_cache: &mut CudaViewMut<'_, bf16>, // [slots, max_len, d]
    v_cache: &mut CudaViewMut<'_, bf16>, // [slots, max_len, d]
    qkv: &CudaView<'_, bf16>,            // [rows, 3d] without biases
    bias: &CudaView<'_, f32>,            // [3d]
    row_slots: &CudaView<'_, i32>,       // [rows] each below `slots`, checked by the caller
    s: SlotShape,
) -> Result<()> {
    const OP: &str = "one2set_slot_attention_bf16";
    let d = s.num_heads * s.head_dim;
    if s.head_dim > 128 || s.num_heads > 32 || s.num_heads == 0 {
        return Err(KpgError::Shape {
            op: OP,
            expected: "head_dim at most 128 and 1 to 32 heads".into(),
            got: format!("head_dim {}, {} heads", s.head_dim, s.num_heads),
        });
    }
    if s.step >= s.max_len {
        return Err(KpgError::Shape {
            op: OP,
            expected: format!("a step below max_len = {}", s.max_len),
            got: s.step.to_string(),
        });
    }
    need(OP, "out", s.rows * d, out.len())?;
    need(OP, "k_cache", s.slots * s.max_len * d, k_cache.len())?;
    need(OP, "v_cache", s.slots * s.max_len * d, v_cache.len())?;
    need(OP, "qkv", s.rows * 3 * d, qkv.len())?;
    need(OP, "bias", 3 * d, bias.len())?;
    need(OP, "slots", s.rows, row_slots.len())?;
    if s.rows == 0 {
        return Ok(());
    }
    let f = dev.function("one2set_decode", OP)?;
    let (step_i, max_len_i) = (int(OP, s.step)?, int(OP, s.max_len)?);
    let (heads_i, hd_i) = (int(OP, s.num_heads)?, int(OP, s.head_dim)?);
    let scale = 1.0 / (s.head_dim as f32).sqrt();
    let cfg = LaunchConfig {
        grid_dim: (s.rows as u32, 1, 1),
        block_dim: (32 * s.num_heads as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut l = dev.stream().launch_builder(&f);
    l.arg(out)
        .arg(k_cache)
        .arg(v_cache)
        .arg(qkv)
        .arg(bias)
        .arg(row_slots)
        .arg(&step_i)
        .arg(&max_len_i)
        .arg(&heads_i)
        .arg(&hd_i)
        .arg(&scale);
    // SAFETY: buffer lengths checked above; row_slots hold distinct slots below `slots` (caller),
    // so each block writes only its own slot's cache entries at `step` < max_len.
    unsafe { l.launch(cfg) }
        .during(|| format!("launching {OP} on {} rows at step {}", s.rows, s.step))?;
    Ok(())
}

/// Sizes of one decoding step's cross-attention.
#[derive(Debug, Clone, Copy)]
pub struct CrossShape {
    pub rows: usize,
    /// (document, rows) groups: a document's active rows, contiguous.
    pub groups: usize,
    /// The most rows of any group.
    pub max_group_rows: usize,
    pub packed: PackedDocs,
    pub num_heads: usize,
    pub head_dim: usize,
    /// Row stride of `copy_attn` (at least `packed.max_len`).
    pub copy_stride: usize,
}

/// Dynamic shared memory of a cross-attention block.
pub fn cross_shared_bytes(s: &CrossShape) -> usize {
    let score_ld = s.packed.max_len.next_multiple_of(4);
    (CROSS_MAX_GROUP * s.head_dim + s.max_group_rows.min(CROSS_MAX_GROUP) * score_ld) * 4
}

/// Every group's rows attend to its document's encoder keys and values; with `copy_attn`, head 0's
/// probabilities are also written there (row r's first `doc_len` entries).
#[allow(clippy::too_many_arguments)]
pub fn cross_attention_forward(
    dev: &CudaDevice,
    out: &mut CudaViewMut<'_, bf16>,              // [rows, d]
    copy_attn: Option<&mut CudaViewMut<'_, f32>>, // [rows, copy_stride]
    q: &CudaView<'_, bf16>,                       // [rows, d] without bias
    q_bias: &CudaView<'_, f32>,                   // [d]
    kv: &CudaView<'_, bf16>,                      // [tokens, 2d] k then v, biases added
    groups: &CudaView<'_, i32>,                   // [groups, 3] first row, rows, document
    doc_start: &CudaView<'_, i32>,                // [docs]
    doc_len: &CudaView<'_, i32>,                  // [docs]
    s: CrossShape,
) -> Result<()> {
    const OP: &str = "one2set_cross_attention";
    let name = match s.head_dim {
        16 => "one2set_cross_attention_hd16_bf16",
        32 => "one2set_cross_attention_hd32_bf16",
        64 => "one2set_cross_attention_hd64_bf16",
        128 => "one2set_cross_attention_hd128_bf16",
        _ => return Err(head_dim_error(OP, "16, 32, 64 or 128", s.head_dim)),
    };
    let d = s.num_heads * s.head_dim;
    need(OP, "out", s.rows * d, out.len())?;
    need(OP, "q", s.rows * d, q.len())?;
    need(OP, "q_bias", d, q_bias.len())?;
    need(OP, "kv", s.packed.tokens * 2 * d, kv.len())?;
    need(OP, "groups", s.groups * 3, groups.len())?;
    need(OP, "doc_start", s.packed.docs, doc_start.len())?;
    need(OP, "doc_len", s.packed.docs, doc_len.len())?;
    if s.copy_stride < s.packed.max_len {
        return Err(KpgError::Shape {
            op: OP,
            expected: format!("copy_stride of at least {}", s.packed.max_len),
            got: s.copy_stride.to_string(),
        });
    }
    if s.groups == 0 || s.rows == 0 {
        return Ok(());
    }
    let shared = cross_shared_bytes(&s);
    if shared > CROSS_MAX_SHARED {
        return Err(KpgError::Shape {
            op: OP,
            expected: format!(
                "documents short enough for {} KiB of shared memory",
                CROSS_MAX_SHARED / 1024
            ),
            got: format!("{} tokens ({} KiB)", s.packed.max_len, shared / 1024),
        });
    }
    require_16_byte_aligned(dev, OP, "kv", kv)?;
    let f = dev.function("one2set_decode", name)?;
    if shared > DEFAULT_SHARED {
        f.set_attribute(
            CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            shared as i32,
        )
        .during(|| format!("allowing {name} {shared} bytes of shared memory"))?;
    }
    let heads_i = int(OP, s.num_heads)?;
    let stride_i = int(OP, s.copy_stride)?;
    let score_ld_i = int(OP, s.packed.max_len.next_multiple_of(4))?;
    let scale = 1.0 / (s.head_dim as f32).sqrt();
    let cfg = LaunchConfig {
        grid_dim: (s.groups as u32, s.num_heads as u32, 1),
        block_dim: (128, 1, 1),
        shared_mem_bytes: shared as u32,
    };
    let null = 0u64;
    let mut l = dev.stream().launch_builder(&f);
    l.arg(out);
    match copy_attn {
        Some(c) => {
            need(OP, "copy_attn", s.rows * s.copy_stride, c.len())?;
            l.arg(c)
        }
        None => l.arg(&null),
    };
    l.arg(q)
        .arg(q_bias)
        .arg(kv)
        .arg(groups)
        .arg(doc_start)
        .arg(doc_len)
        .arg(&heads_i)
        .arg(&stride_i)
        .arg(&score_ld_i)
        .arg(&scale);
    // SAFETY: lengths checked above; the groups (built by the caller) cover disjoint row ranges
    // below `rows` and name documents below `docs`, whose token ranges lie inside kv; documents are
    // at most max_len long, which sizes the shared score rows.
    unsafe { l.launch(cfg) }.during(|| {
        format!(
            "launching {name} on {} groups of up to {} rows over up to {} tokens",
            s.groups, s.max_group_rows, s.packed.max_len
        )
    })?;
    Ok(())
}
