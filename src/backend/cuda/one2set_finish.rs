//! The end of a One2Set greedy step on the GPU: the vocabulary logits in f32 (cuBLAS, bf16 inputs)
//! and the fused finish (`kernels/one2set_finish.cu`) that merges them with the copy distribution
//! into each row's token, its probability and its most-attended source position, without a
//! probability row in memory. CPU twin: `pick_one` in `one2set::decode` (with the statistics of
//! `backend::cpu::softmax_stats`).
//!
//! The logits stay f32: rounding them to bf16 would move a probability by up to 2^-8·|logit|
//! relative (3% at a logit of 8), past the confidence tolerance.

use cudarc::cublas::result::gemm_ex;
use cudarc::cublas::sys::{
    cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType_t,
};
use cudarc::driver::{CudaView, CudaViewMut, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg};
use half::bf16;

use crate::backend::cuda::device::{CudaDevice, CudaResultExt};
use crate::backend::cuda::one2set_layers::{int, need};
use crate::error::Result;

/// `logits[m, n] = x[m, k] · w[n, k]ᵀ` with f32 output (bf16 inputs, f32 accumulation).
pub fn logits_f32(
    dev: &CudaDevice,
    logits: &mut CudaViewMut<'_, f32>, // [m, n]
    x: &CudaView<'_, bf16>,            // [m, k]
    w: &CudaView<'_, bf16>,            // [n, k]
    (m, n, k): (usize, usize, usize),
) -> Result<()> {
    const OP: &str = "logits_f32 (cuBLAS)";
    need(OP, "logits", m * n, logits.len())?;
    need(OP, "x", m * k, x.len())?;
    need(OP, "w", n * k, w.len())?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let (m_i, n_i, k_i) = (int(OP, m)?, int(OP, n)?, int(OP, k)?);
    let (alpha, beta) = (1f32, 0f32);
    let stream = dev.stream();
    let (w_ptr, _w) = w.device_ptr(stream);
    let (x_ptr, _x) = x.device_ptr(stream);
    let (y_ptr, _y) = logits.device_ptr_mut(stream);
    // SAFETY: as in gemm::linear_bf16 (column-major yᵀ[n, m] = wᵀ · x): the operands' lengths were
    // checked against m, n, k above; all live on the device's stream, the cuBLAS handle's stream;
    // alpha and beta are f32, as CUBLAS_COMPUTE_32F requires.
    unsafe {
        gemm_ex(
            *dev.blas().handle(),
            cublasOperation_t::CUBLAS_OP_T,
            cublasOperation_t::CUBLAS_OP_N,
            n_i,
            m_i,
            k_i,
            (&alpha) as *const f32 as *const _,
            w_ptr as *const _,
            cudaDataType_t::CUDA_R_16BF,
            k_i,
            x_ptr as *const _,
            cudaDataType_t::CUDA_R_16BF,
            k_i,
            (&beta) as *const f32 as *const _,
            y_ptr as *mut _,
            cudaDataType_t::CUDA_R_32F,
            n_i,
            cublasComputeType_t::CUBLAS_COMPUTE_32F,
            cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }
    .during(|| format!("running a {m}x{n}x{k} bf16 GEMM with f32 output"))
}

/// Sizes of one finish.
#[derive(Debug, Clone, Copy)]
pub struct FinishShape {
    pub rows: usize,
    pub vocab: usize,
    pub d: usize,
    pub docs: usize,
    pub tokens: usize,
    pub copy_stride: usize,
    pub num_codes: usize,
}

/// The source side of the copy mechanism, per packed source token (built on the host from
/// `SourceIds`): extended id, the next position of the same id in the document (-1 at the last),
/// and 1 at an id's first position.
pub struct CopySource<'a> {
    pub ext: &'a CudaView<'a, i32>,   // [tokens]
    pub next: &'a CudaView<'a, i32>,  // [tokens]
    pub first: &'a CudaView<'a, i32>, // [tokens]
}

/// Every row's pick: `picks[0·rows + r]` the token, `[rows + r]` the attention argmax, `[2·rows +
/// r]` the probability's f32 bits.
#[allow(clippy::too_many_arguments)]
pub fn finish_forward(
    dev: &CudaDevice,
    picks: &mut CudaViewMut<'_, i32>, // [3, rows]
    logits: &CudaView<'_, f32>,       // [rows, vocab]
    features: &CudaView<'_, bf16>,    // [rows, d]
    p_gen_w: &CudaView<'_, f32>,      // [d]
    p_gen_b: f32,
    copy_attn: &CudaView<'_, f32>, // [rows, copy_stride]
    slots: &CudaView<'_, i32>,     // [rows]
    doc_start: &CudaView<'_, i32>, // [docs]
    doc_len: &CudaView<'_, i32>,   // [docs]
    source: CopySource<'_>,
    s: FinishShape,
) -> Result<()> {
    const OP: &str = "one2set_finish_f32";
    need(OP, "picks", 3 * s.rows, picks.len())?;
    need(OP, "logits", s.rows * s.vocab, logits.len())?;
    need(OP, "features", s.rows * s.d, features.len())?;
    need(OP, "p_gen_w", s.d, p_gen_w.len())?;
    need(OP, "copy_attn", s.rows * s.copy_stride, copy_attn.len())?;
    need(OP, "slots", s.rows, slots.len())?;
    need(OP, "doc_start", s.docs, doc_start.len())?;
    need(OP, "doc_len", s.docs, doc_len.len())?;
    need(OP, "src_ext", s.tokens, source.ext.len())?;
    need(OP, "src_next", s.tokens, source.next.len())?;
    need(OP, "src_first", s.tokens, source.first.len())?;
    if s.rows == 0 {
        return Ok(());
    }
    let f = dev.function("one2set_finish", OP)?;
    let (rows_i, vocab_i, d_i) = (int(OP, s.rows)?, int(OP, s.vocab)?, int(OP, s.d)?);
    let (stride_i, codes_i) = (int(OP, s.copy_stride)?, int(OP, s.num_codes)?);
    let cfg = LaunchConfig {
        grid_dim: (s.rows as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut l = dev.stream().launch_builder(&f);
    l.arg(picks)
        .arg(logits)
        .arg(features)
        .arg(p_gen_w)
        .arg(copy_attn)
        .arg(slots)
        .arg(doc_start)
        .arg(doc_len)
        .arg(source.ext)
        .arg(source.next)
        .arg(source.first)
        .arg(&p_gen_b)
        .arg(&rows_i)
        .arg(&vocab_i)
        .arg(&d_i)
        .arg(&stride_i)
        .arg(&codes_i);
    // SAFETY: lengths checked above; slots / num_codes index documents below `docs` whose token
    // ranges lie inside the source arrays and whose lengths fit copy_stride (caller), and the
    // chains in src_next stay inside their document.
    unsafe { l.launch(cfg) }.during(|| format!("launching {OP} on {} rows", s.rows))?;
    Ok(())
}
