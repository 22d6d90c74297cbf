//! f32 ↔ bf16 on the GPU (`kernels/convert.cu`), and weight upload: a tensor goes from the memory
//! map to the device in its stored dtype and is converted there, so loading never holds a host
//! copy of more than one tensor.

use cudarc::driver::{CudaSlice, CudaView, CudaViewMut, LaunchConfig, PushKernelArg};
use half::bf16;

use crate::backend::cuda::device::{CudaDevice, CudaResultExt};
use crate::error::Result;
use crate::model::weights::{DType, WeightView};

const BLOCK: u32 = 256;

fn grid(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((n as u64).div_ceil(BLOCK as u64) as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

macro_rules! convert_launcher {
    ($fn_name:ident, $kernel:literal, $from:ty, $to:ty) => {
        #[doc = concat!("Runs `", $kernel, "` over the first `n` elements.")]
        pub fn $fn_name(
            dev: &CudaDevice,
            out: &mut CudaViewMut<'_, $to>, // [n]
            x: &CudaView<'_, $from>,        // [n]
            n: usize,
        ) -> Result<()> {
            if out.len() < n || x.len() < n {
                return Err(crate::error::KpgError::Shape {
                    op: $kernel,
                    expected: format!("buffers of at least {n} elements"),
                    got: format!("out {}, x {}", out.len(), x.len()),
                });
            }
            if n == 0 {
                return Ok(());
            }
            let f = dev.function("convert", $kernel)?;
            let n_arg = n as i64;
            let mut launch = dev.stream().launch_builder(&f);
            launch.arg(out).arg(x).arg(&n_arg);
            // SAFETY: both buffers hold at least n elements (asserted above).
            unsafe { launch.launch(grid(n)) }
                .during(|| format!("launching {} on {n} elements", $kernel))?;
            Ok(())
        }
    };
}

convert_launcher!(f32_to_bf16, "f32_to_bf16", f32, bf16);
convert_launcher!(bf16_to_f32, "bf16_to_f32", bf16, f32);
convert_launcher!(f16_to_bf16, "f16_to_bf16", half::f16, bf16);

/// Uploads one tensor as bf16 into `dst` (exactly its length): bf16 bytes go straight from the
/// memory map; f16 is widened on the GPU; f32 is narrowed on the host, one tensor at a time.
pub fn upload_bf16_into(
    dev: &CudaDevice,
    view: WeightView<'_>,
    dst: &mut CudaViewMut<'_, bf16>,
    name: &str,
) -> Result<()> {
    let n = view.numel();
    if dst.len() != n {
        return Err(crate::error::KpgError::Shape {
            op: "uploading a weight",
            expected: format!("tensor `{name}` of {} elements", dst.len()),
            got: n.to_string(),
        });
    }
    let what = format!("tensor `{name}`");
    let stream = dev.stream();
    match view.dtype {
        DType::BF16 => match bytemuck::try_cast_slice::<u8, bf16>(view.bytes) {
            Ok(host) => stream.memcpy_htod(host, dst),
            // A safetensors header whose length is not even leaves the data unaligned.
            Err(_) => {
                stream.memcpy_htod(&bytemuck::pod_collect_to_vec::<u8, bf16>(view.bytes), dst)
            }
        }
        .during(|| format!("uploading {what}")),
        DType::F16 => {
            let staged = match bytemuck::try_cast_slice::<u8, half::f16>(view.bytes) {
                Ok(host) => dev.upload(host, &what)?,
                Err(_) => dev.upload(
                    &bytemuck::pod_collect_to_vec::<u8, half::f16>(view.bytes),
                    &what,
                )?,
            };
            f16_to_bf16(dev, dst, &staged.as_view(), n)
        }
        DType::F32 => {
            let host: Vec<bf16> = view
                .bytes
                .chunks_exact(4)
                .map(|b| bf16::from_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect();
            stream
                .memcpy_htod(&host, dst)
                .during(|| format!("uploading {what}"))
        }
        // GGUF blocks: dequantized on the host (the device computes in bf16 anyway).
        DType::Quant(_) => {
            let mut values = vec![0f32; n];
            crate::backend::cpu::convert::to_f32(view.dtype, view.bytes, &mut values);
            let host: Vec<bf16> = values.iter().map(|&v| bf16::from_f32(v)).collect();
            stream
                .memcpy_htod(&host, dst)
                .during(|| format!("uploading {what}"))
        }
    }
}

/// Uploads one tensor as bf16 into a new device buffer (see [`upload_bf16_into`]).
pub fn upload_bf16(dev: &CudaDevice, view: WeightView<'_>, name: &str) -> Result<CudaSlice<bf16>> {
    let n = view.numel();
    let mut out = dev.alloc::<bf16>(n, &format!("tensor `{name}`"))?;
    upload_bf16_into(dev, view, &mut out.slice_mut(..n), name)?;
    Ok(out)
}
