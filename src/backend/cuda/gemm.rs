//! Dense matrix products through cuBLAS: bf16 storage, f32 accumulation (`CUBLAS_COMPUTE_32F`).
//!
//! kpg keeps activations row-major and weights in PyTorch's `[out, in]` layout, so every linear
//! layer is `y[m, n] = x[m, k] · w[n, k]ᵀ`. cuBLAS is column-major: the same memory read
//! column-major is `yᵀ[n, m] = W_cmᵀ · X_cm`, with W_cm the `[k, n]` and X_cm the `[k, m]`
//! column-major views of `w` and `x`: one `gemm(T, N, n, m, k)`, no copies.

use cudarc::cublas::sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
use cudarc::cublas::{Gemm, GemmConfig, StridedBatchedConfig};
use cudarc::driver::{CudaView, CudaViewMut, DevicePtr, DevicePtrMut};
use half::bf16;

use crate::backend::cuda::check::{int, need};
use crate::backend::cuda::device::{CudaDevice, CudaResultExt};
use crate::error::Result;

/// `y[m, n] = x[m, k] · w[n, k]ᵀ` (+ `beta · y`), bf16 in and out, f32 accumulation.
pub fn linear_bf16<X, W, Y>(
    dev: &CudaDevice,
    y: &mut Y, // [m, n]
    x: &X,     // [m, k]
    w: &W,     // [n, k]
    (m, n, k): (usize, usize, usize),
    beta: f32,
) -> Result<()>
where
    X: DevicePtr<bf16>,
    W: DevicePtr<bf16>,
    Y: DevicePtrMut<bf16>,
{
    const OP: &str = "linear_bf16 (cuBLAS)";
    need(OP, "x", m * k, x.len())?;
    need(OP, "w", n * k, w.len())?;
    need(OP, "y", m * n, y.len())?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let cfg = GemmConfig {
        transa: CUBLAS_OP_T,
        transb: CUBLAS_OP_N,
        m: int(OP, n)?,
        n: int(OP, m)?,
        k: int(OP, k)?,
        alpha: bf16::ONE,
        lda: int(OP, k)?,
        ldb: int(OP, k)?,
        beta: bf16::from_f32(beta),
        ldc: int(OP, n)?,
    };
    // SAFETY: the lengths of x, w and y were checked against m, n, k above, and all three live on
    // the device's stream, which is the cuBLAS handle's stream.
    unsafe { dev.blas().gemm(cfg, w, x, y) }.during(|| format!("running a {m}x{n}x{k} bf16 GEMM"))
}

/// `batch` independent products `y_b[m, n] = x_b[m, k] · w_b[n, k]ᵀ`, each operand at a fixed
/// element stride from the previous one (per-head attention scores, for example).
#[allow(clippy::too_many_arguments)]
pub fn linear_bf16_batched<X, W, Y>(
    dev: &CudaDevice,
    y: &mut Y, // [batch][m, n] at stride_y
    x: &X,     // [batch][m, k] at stride_x
    w: &W,     // [batch][n, k] at stride_w
    (m, n, k): (usize, usize, usize),
    batch: usize,
    (stride_y, stride_x, stride_w): (usize, usize, usize),
) -> Result<()>
where
    X: DevicePtr<bf16>,
    W: DevicePtr<bf16>,
    Y: DevicePtrMut<bf16>,
{
    const OP: &str = "linear_bf16_batched (cuBLAS)";
    if batch == 0 || m == 0 || n == 0 {
        return Ok(());
    }
    need(OP, "x", (batch - 1) * stride_x + m * k, x.len())?;
    need(OP, "w", (batch - 1) * stride_w + n * k, w.len())?;
    need(OP, "y", (batch - 1) * stride_y + m * n, y.len())?;
    let cfg = StridedBatchedConfig {
        gemm: GemmConfig {
            transa: CUBLAS_OP_T,
            transb: CUBLAS_OP_N,
            m: int(OP, n)?,
            n: int(OP, m)?,
            k: int(OP, k)?,
            alpha: bf16::ONE,
            lda: int(OP, k)?,
            ldb: int(OP, k)?,
            beta: bf16::ZERO,
            ldc: int(OP, n)?,
        },
        batch_size: int(OP, batch)?,
        stride_a: stride_w as i64,
        stride_b: stride_x as i64,
        stride_c: stride_y as i64,
    };
    // SAFETY: every operand's extent for the last batch entry was checked above; one stream.
    unsafe { dev.blas().gemm_strided_batched(cfg, w, x, y) }
        .during(|| format!("running {batch} batched {m}x{n}x{k} bf16 GEMMs"))
}

/// `y[m, n] = x[m, k] · w[n, k]ᵀ` with bf16 operands and an f32 result: the LM head, whose logits
/// leave the GPU and would otherwise carry a bf16 rounding (3.9e-3 relative) into comparisons.
pub fn linear_bf16_f32out(
    dev: &CudaDevice,
    y: &mut CudaViewMut<'_, f32>, // [m, n]
    x: &CudaView<'_, bf16>,       // [m, k]
    w: &CudaView<'_, bf16>,       // [n, k]
    (m, n, k): (usize, usize, usize),
) -> Result<()> {
    use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cudaDataType_t};
    const OP: &str = "linear_bf16_f32out (cuBLAS)";
    need(OP, "x", m * k, x.len())?;
    need(OP, "w", n * k, w.len())?;
    need(OP, "y", m * n, y.len())?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let (alpha, beta) = (1f32, 0f32);
    let stream = dev.stream();
    let (w_ptr, _w_sync) = w.device_ptr(stream);
    let (x_ptr, _x_sync) = x.device_ptr(stream);
    let (y_ptr, _y_sync) = y.device_ptr_mut(stream);
    // SAFETY: extents checked above; the handle's stream is the device stream the pointers were
    // taken on; alpha and beta outlive the call (host pointer mode).
    unsafe {
        cudarc::cublas::result::gemm_ex(
            *dev.blas().handle(),
            CUBLAS_OP_T,
            CUBLAS_OP_N,
            int(OP, n)?,
            int(OP, m)?,
            int(OP, k)?,
            (&alpha) as *const f32 as *const _,
            w_ptr as *const _,
            cudaDataType_t::CUDA_R_16BF,
            int(OP, k)?,
            x_ptr as *const _,
            cudaDataType_t::CUDA_R_16BF,
            int(OP, k)?,
            (&beta) as *const f32 as *const _,
            y_ptr as *mut _,
            cudaDataType_t::CUDA_R_32F,
            int(OP, n)?,
            cublasComputeType_t::CUBLAS_COMPUTE_32F,
            cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }
    .during(|| format!("running a {m}x{n}x{k} bf16 GEMM with f32 output"))
}
