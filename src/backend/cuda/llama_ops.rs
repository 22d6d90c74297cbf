//! Launchers for the LLaMA block's small kernels (`kernels/{rmsnorm,rope,activation,embedding,
//! label_head,argmax}.cu`). Each checks lengths on the host, then makes one launch. CPU twins, in
//! order: `rmsnorm_forward`; `residual_add_forward` then `rmsnorm_forward`;
//! `RopeTable::rope_forward` then `PagedKvCache::write_kv`; `silu_mul_forward`;
//! `residual_add_forward`; `embedding_forward`; `Llama::restricted_head`; `generate::argmax`.

use cudarc::driver::{CudaView, CudaViewMut, LaunchConfig, PushKernelArg};
use half::bf16;

use crate::backend::cuda::check::need;
use crate::backend::cuda::device::{CudaDevice, CudaResultExt};
use crate::error::{KpgError, Result};

fn rows(num_rows: usize, threads: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (num_rows as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn elements(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((n as u64).div_ceil(256) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// out = rmsnorm(x) · weight.
pub fn rmsnorm(
    dev: &CudaDevice,
    out: &mut CudaViewMut<'_, bf16>, // [num_rows, dim]
    x: &CudaView<'_, f32>,           // [num_rows, dim]
    weight: &CudaView<'_, f32>,      // [dim]
    num_rows: usize,
    eps: f32,
) -> Result<()> {
    const OP: &str = "rmsnorm_f32_bf16";
    let dim = weight.len();
    need(OP, "out", num_rows * dim, out.len())?;
    need(OP, "x", num_rows * dim, x.len())?;
    if num_rows == 0 {
        return Ok(());
    }
    let f = dev.function("rmsnorm", OP)?;
    let dim_arg = dim as i32;
    let mut l = dev.stream().launch_builder(&f);
    l.arg(out).arg(x).arg(weight).arg(&dim_arg).arg(&eps);
    // SAFETY: out and x hold num_rows rows of dim (checked), weight holds dim; one block a row.
    unsafe { l.launch(rows(num_rows, 256)) }.during(|| format!("launching {OP}"))?;
    Ok(())
}

/// x += delta, then out = rmsnorm(x) · weight.
pub fn residual_rmsnorm(
    dev: &CudaDevice,
    out: &mut CudaViewMut<'_, bf16>, // [num_rows, dim]
    x: &mut CudaViewMut<'_, f32>,    // [num_rows, dim]
    delta: &CudaView<'_, bf16>,      // [num_rows, dim]
    weight: &CudaView<'_, f32>,      // [dim]
    num_rows: usize,
    eps: f32,
) -> Result<()> {
    const OP: &str = "residual_rmsnorm_f32_bf16";
    let dim = weight.len();
    need(OP, "out", num_rows * dim, out.len())?;
    need(OP, "x", num_rows * dim, x.len())?;
    need(OP, "delta", num_rows * dim, delta.len())?;
    if num_rows == 0 {
        return Ok(());
    }
    let f = dev.function("rmsnorm", OP)?;
    let dim_arg = dim as i32;
    let mut l = dev.stream().launch_builder(&f);
    l.arg(out)
        .arg(x)
        .arg(delta)
        .arg(weight)
        .arg(&dim_arg)
        .arg(&eps);
    // SAFETY: out, x and delta hold num_rows rows of dim (checked), weight holds dim.
    unsafe { l.launch(rows(num_rows, 256)) }.during(|| format!("launching {OP}"))?;
    Ok(())
}

/// Head counts of the fused QKV rows.
#[derive(Debug, Clone, Copy)]
pub struct QkvShape {
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

/// Rotates the queries into `q_out` and the keys into their cache slots, and copies the values
/// into theirs. `slot_mapping` -1 marks a token whose K and V are not stored.
#[allow(clippy::too_many_arguments)]
pub fn rope_write_kv(
    dev: &CudaDevice,
    q_out: &mut CudaViewMut<'_, bf16>, // [num_tokens, num_heads * head_dim]
    k_cache: &mut CudaViewMut<'_, bf16>, // [num_slots, num_kv_heads * head_dim]
    v_cache: &mut CudaViewMut<'_, bf16>, // [num_slots, num_kv_heads * head_dim]
    qkv: &CudaView<'_, bf16>,          // [num_tokens, (num_heads + 2 num_kv_heads) * head_dim]
    token_pos: &CudaView<'_, u32>,     // [num_tokens]
    slot_mapping: &CudaView<'_, i64>,  // [num_tokens]
    inv_freq: &CudaView<'_, f32>,      // [head_dim / 2]
    shape: QkvShape,
    num_tokens: usize,
) -> Result<()> {
    const OP: &str = "rope_write_kv_bf16";
    let QkvShape {
        num_heads,
        num_kv_heads,
        head_dim,
    } = shape;
    if head_dim % 2 != 0 || inv_freq.len() != head_dim / 2 {
        return Err(KpgError::Shape {
            op: OP,
            expected: format!("an even head_dim and {} frequencies", head_dim / 2),
            got: format!("head_dim {head_dim}, {} frequencies", inv_freq.len()),
        });
    }
    let (q_dim, kv_dim) = (num_heads * head_dim, num_kv_heads * head_dim);
    need(OP, "q_out", num_tokens * q_dim, q_out.len())?;
    need(OP, "qkv", num_tokens * (q_dim + 2 * kv_dim), qkv.len())?;
    need(OP, "token_pos", num_tokens, token_pos.len())?;
    need(OP, "slot_mapping", num_tokens, slot_mapping.len())?;
    if k_cache.len() != v_cache.len() || k_cache.len() % kv_dim.max(1) != 0 {
        return Err(KpgError::Shape {
            op: OP,
            expected: format!("K and V caches of equal length, whole rows of {kv_dim}"),
            got: format!("{} and {}", k_cache.len(), v_cache.len()),
        });
    }
    if num_tokens == 0 {
        return Ok(());
    }
    let f = dev.function("rope", OP)?;
    let (h, kvh, d) = (num_heads as i32, num_kv_heads as i32, head_dim as i32);
    let mut l = dev.stream().launch_builder(&f);
    l.arg(q_out)
        .arg(k_cache)
        .arg(v_cache)
        .arg(qkv)
        .arg(token_pos)
        .arg(slot_mapping)
        .arg(inv_freq)
        .arg(&h)
        .arg(&kvh)
        .arg(&d);
    // SAFETY: row lengths checked above; slot_mapping entries are slots of reserved cache blocks
    // (PagedKvCache::slot), all below the cache's row count, or -1.
    unsafe { l.launch(rows(num_tokens, 128)) }.during(|| format!("launching {OP}"))?;
    Ok(())
}

/// out = silu(gate) · up over rows laid out `[gate | up]`.
pub fn silu_mul(
    dev: &CudaDevice,
    out: &mut CudaViewMut<'_, bf16>, // [num_rows, inter]
    gate_up: &CudaView<'_, bf16>,    // [num_rows, 2 * inter]
    num_rows: usize,
    inter: usize,
) -> Result<()> {
    const OP: &str = "silu_mul_bf16";
    need(OP, "out", num_rows * inter, out.len())?;
    need(OP, "gate_up", num_rows * 2 * inter, gate_up.len())?;
    if num_rows * inter == 0 {
        return Ok(());
    }
    let f = dev.function("activation", OP)?;
    let (r, i) = (num_rows as i32, inter as i32);
    let mut l = dev.stream().launch_builder(&f);
    l.arg(out).arg(gate_up).arg(&r).arg(&i);
    // SAFETY: lengths checked; the kernel bounds-checks its flat index.
    unsafe { l.launch(elements(num_rows * inter)) }.during(|| format!("launching {OP}"))?;
    Ok(())
}

/// x += delta.
pub fn residual_add(
    dev: &CudaDevice,
    x: &mut CudaViewMut<'_, f32>, // [n]
    delta: &CudaView<'_, bf16>,   // [n]
    n: usize,
) -> Result<()> {
    const OP: &str = "residual_add_f32_bf16";
    need(OP, "x", n, x.len())?;
    need(OP, "delta", n, delta.len())?;
    if n == 0 {
        return Ok(());
    }
    let f = dev.function("activation", OP)?;
    let n_arg = n as i64;
    let mut l = dev.stream().launch_builder(&f);
    l.arg(x).arg(delta).arg(&n_arg);
    // SAFETY: both hold n elements (checked); the kernel bounds-checks.
    unsafe { l.launch(elements(n)) }.during(|| format!("launching {OP}"))?;
    Ok(())
}

/// out[t] = table[ids[t]] widened to f32. The caller has checked every id against `vocab`.
pub fn embedding(
    dev: &CudaDevice,
    out: &mut CudaViewMut<'_, f32>, // [num_tokens, dim]
    ids: &CudaView<'_, u32>,        // [num_tokens]
    table: &CudaView<'_, bf16>,     // [vocab, dim]
    num_tokens: usize,
    dim: usize,
) -> Result<()> {
    const OP: &str = "embedding_bf16";
    need(OP, "out", num_tokens * dim, out.len())?;
    need(OP, "ids", num_tokens, ids.len())?;
    if num_tokens == 0 {
        return Ok(());
    }
    let f = dev.function("embedding", OP)?;
    let d = dim as i32;
    let mut l = dev.stream().launch_builder(&f);
    l.arg(out).arg(ids).arg(table).arg(&d);
    // SAFETY: out holds num_tokens rows; ids were validated below vocab by the caller (Llama's
    // forward checks every token), so each table row read is in bounds.
    unsafe { l.launch(rows(num_tokens, 256)) }.during(|| format!("launching {OP}"))?;
    Ok(())
}

/// out[i] = rmsnorm(x[rows[i]]) · lm_head[ids[i]]: the label logits of the selector's choices.
#[allow(clippy::too_many_arguments)]
pub fn label_head(
    dev: &CudaDevice,
    out: &mut CudaViewMut<'_, f32>,  // [num_out]
    x: &CudaView<'_, f32>,           // [num_tokens, dim]
    rows_of: &CudaView<'_, u32>,     // [num_out]
    ids: &CudaView<'_, u32>,         // [num_out]
    norm_weight: &CudaView<'_, f32>, // [dim]
    lm_head: &CudaView<'_, bf16>,    // [vocab, dim]
    num_out: usize,
    eps: f32,
) -> Result<()> {
    const OP: &str = "label_head_bf16";
    let dim = norm_weight.len();
    need(OP, "out", num_out, out.len())?;
    need(OP, "rows", num_out, rows_of.len())?;
    need(OP, "ids", num_out, ids.len())?;
    if num_out == 0 {
        return Ok(());
    }
    let f = dev.function("label_head", OP)?;
    let d = dim as i32;
    let mut l = dev.stream().launch_builder(&f);
    l.arg(out)
        .arg(x)
        .arg(rows_of)
        .arg(ids)
        .arg(norm_weight)
        .arg(lm_head)
        .arg(&d)
        .arg(&eps);
    // SAFETY: the caller checked rows against the token count and ids against the vocabulary.
    unsafe { l.launch(rows(num_out, 256)) }.during(|| format!("launching {OP}"))?;
    Ok(())
}

/// out[r] = index of the largest logit of row r (the first on ties).
pub fn argmax(
    dev: &CudaDevice,
    out: &mut CudaViewMut<'_, u32>, // [num_rows]
    logits: &CudaView<'_, f32>,     // [num_rows, n]
    num_rows: usize,
    n: usize,
) -> Result<()> {
    const OP: &str = "argmax_f32";
    need(OP, "out", num_rows, out.len())?;
    need(OP, "logits", num_rows * n, logits.len())?;
    if num_rows == 0 || n == 0 {
        return Ok(());
    }
    let f = dev.function("argmax", OP)?;
    let n_arg = n as i32;
    let mut l = dev.stream().launch_builder(&f);
    l.arg(out).arg(logits).arg(&n_arg);
    // SAFETY: lengths checked; 256 threads match the kernel's shared arrays.
    unsafe { l.launch(rows(num_rows, 256)) }.during(|| format!("launching {OP}"))?;
    Ok(())
}
