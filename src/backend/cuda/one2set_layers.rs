//! Launchers of `kernels/one2set_layers.cu`: the row-wise pieces of the One2Set Transformer around
//! its cuBLAS GEMMs (embeddings with positions, LayerNorm, bias and ReLU, bias + residual, the
//! decoder's input sum). The residual stream is f32; GEMM operands are bf16. CPU twins: the layer
//! functions in `backend::cpu` that `model::one2set` calls; `selftest::one2set` holds each to them.

use cudarc::driver::{CudaView, CudaViewMut, LaunchConfig, PushKernelArg};
use half::bf16;

pub(crate) use crate::backend::cuda::check::{int, need};
use crate::backend::cuda::device::{CudaDevice, CudaResultExt};
use crate::error::Result;

const MODULE: &str = "one2set_layers";
const ROW_THREADS: u32 = 128;

fn rows_cfg(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (ROW_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// `out[r] = bf16(scale · embed[ids[r]] + pos_table[positions[r]])`, no position where it is -1.
/// Ids must be below `vocab` (checked by the caller on the host, where they come from).
#[allow(clippy::too_many_arguments)]
pub fn embed_forward(
    dev: &CudaDevice,
    out: &mut CudaViewMut<'_, bf16>, // [rows, d]
    ids: &CudaView<'_, i32>,         // [rows]
    positions: &CudaView<'_, i32>,   // [rows]
    embed: &CudaView<'_, bf16>,      // [vocab, d]
    pos_table: &CudaView<'_, f32>,   // [max_pos, d]
    (rows, d): (usize, usize),
    scale: f32,
) -> Result<()> {
    const OP: &str = "one2set_embed_bf16";
    need(OP, "out", rows * d, out.len())?;
    need(OP, "ids", rows, ids.len())?;
    need(OP, "positions", rows, positions.len())?;
    need(OP, "embed", d, embed.len())?;
    need(OP, "pos_table", d, pos_table.len())?;
    if rows == 0 {
        return Ok(());
    }
    let f = dev.function(MODULE, OP)?;
    let d_i = int(OP, d)?;
    let mut l = dev.stream().launch_builder(&f);
    l.arg(out)
        .arg(ids)
        .arg(positions)
        .arg(embed)
        .arg(pos_table)
        .arg(&scale)
        .arg(&d_i);
    // SAFETY: out holds rows·d elements and ids, positions rows each (checked above); the ids and
    // positions index embed and pos_table within bounds, which the caller guarantees.
    unsafe { l.launch(rows_cfg(rows)) }.during(|| format!("launching {OP} on {rows}x{d}"))?;
    Ok(())
}

/// `out = LayerNorm(x)` row by row, f32 in, bf16 out.
pub fn layernorm_forward(
    dev: &CudaDevice,
    out: &mut CudaViewMut<'_, bf16>, // [rows, d]
    x: &CudaView<'_, f32>,           // [rows, d]
    weight: &CudaView<'_, f32>,      // [d]
    bias: &CudaView<'_, f32>,        // [d]
    (rows, d): (usize, usize),
    eps: f32,
) -> Result<()> {
    const OP: &str = "one2set_layernorm_bf16";
    need(OP, "out", rows * d, out.len())?;
    need(OP, "x", rows * d, x.len())?;
    need(OP, "weight", d, weight.len())?;
    need(OP, "bias", d, bias.len())?;
    if rows == 0 {
        return Ok(());
    }
    let f = dev.function(MODULE, OP)?;
    let d_i = int(OP, d)?;
    let mut l = dev.stream().launch_builder(&f);
    l.arg(out).arg(x).arg(weight).arg(bias).arg(&d_i).arg(&eps);
    // SAFETY: x and out hold rows·d elements, weight and bias d (checked above).
    unsafe { l.launch(rows_cfg(rows)) }.during(|| format!("launching {OP} on {rows}x{d}"))?;
    Ok(())
}

/// `y += bias` per row in place, then ReLU when `relu`.
pub fn bias_forward(
    dev: &CudaDevice,
    y: &mut CudaViewMut<'_, bf16>, // [rows, n]
    bias: &CudaView<'_, f32>,      // [n]
    (rows, n): (usize, usize),
    relu: bool,
) -> Result<()> {
    const OP: &str = "one2set_bias_bf16";
    need(OP, "y", rows * n, y.len())?;
    need(OP, "bias", n, bias.len())?;
    if rows == 0 || n == 0 {
        return Ok(());
    }
    let f = dev.function(MODULE, OP)?;
    let (n_i, relu_i) = (int(OP, n)?, relu as i32);
    let mut l = dev.stream().launch_builder(&f);
    l.arg(y).arg(bias).arg(&n_i).arg(&relu_i);
    // SAFETY: y holds rows·n elements and bias n (checked above); a block per row.
    unsafe { l.launch(rows_cfg(rows)) }.during(|| format!("launching {OP} on {rows}x{n}"))?;
    Ok(())
}

/// `x = (accumulate ? x : 0) + y + bias` per row.
pub fn residual_forward(
    dev: &CudaDevice,
    x: &mut CudaViewMut<'_, f32>, // [rows, d]
    y: &CudaView<'_, bf16>,       // [rows, d]
    bias: &CudaView<'_, f32>,     // [d]
    (rows, d): (usize, usize),
    accumulate: bool,
) -> Result<()> {
    const OP: &str = "one2set_residual_bf16";
    need(OP, "x", rows * d, x.len())?;
    need(OP, "y", rows * d, y.len())?;
    need(OP, "bias", d, bias.len())?;
    if rows == 0 || d == 0 {
        return Ok(());
    }
    let f = dev.function(MODULE, OP)?;
    let (d_i, acc_i) = (int(OP, d)?, accumulate as i32);
    let mut l = dev.stream().launch_builder(&f);
    l.arg(x).arg(y).arg(bias).arg(&d_i).arg(&acc_i);
    // SAFETY: x and y hold rows·d elements and bias d (checked above); a block per row.
    unsafe { l.launch(rows_cfg(rows)) }.during(|| format!("launching {OP} on {rows}x{d}"))?;
    Ok(())
}

/// The decoder's input: `x[r] = y[r] + bias + pos_row + codes[slots[r] % num_codes]`.
#[allow(clippy::too_many_arguments)]
pub fn decoder_input_forward(
    dev: &CudaDevice,
    x: &mut CudaViewMut<'_, f32>, // [rows, d]
    y: &CudaView<'_, bf16>,       // [rows, d]
    bias: &CudaView<'_, f32>,     // [d]
    pos_row: &CudaView<'_, f32>,  // [d]
    codes: &CudaView<'_, f32>,    // [num_codes, d]
    slots: &CudaView<'_, i32>,    // [rows]
    (rows, d, num_codes): (usize, usize, usize),
) -> Result<()> {
    const OP: &str = "one2set_decoder_input_bf16";
    need(OP, "x", rows * d, x.len())?;
    need(OP, "y", rows * d, y.len())?;
    need(OP, "bias", d, bias.len())?;
    need(OP, "pos_row", d, pos_row.len())?;
    need(OP, "codes", num_codes * d, codes.len())?;
    need(OP, "slots", rows, slots.len())?;
    if rows == 0 || d == 0 {
        return Ok(());
    }
    let f = dev.function(MODULE, OP)?;
    let (d_i, codes_i) = (int(OP, d)?, int(OP, num_codes.max(1))?);
    let mut l = dev.stream().launch_builder(&f);
    l.arg(x)
        .arg(y)
        .arg(bias)
        .arg(pos_row)
        .arg(codes)
        .arg(slots)
        .arg(&d_i)
        .arg(&codes_i);
    // SAFETY: x, y hold rows·d elements, slots rows, codes num_codes·d (checked above); slot %
    // num_codes indexes codes within bounds.
    unsafe { l.launch(rows_cfg(rows)) }.during(|| format!("launching {OP} on {rows}x{d}"))?;
    Ok(())
}
