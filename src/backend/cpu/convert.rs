//! Widening stored weights (f32, f16, bf16 little-endian bytes, ggml blocks) to f32.

use half::{bf16, f16, slice::HalfFloatSliceExt};

use crate::model::weights::DType;

/// Converts `out.len()` elements of `dtype` from `bytes` into `out` (for a block format, from a
/// block boundary and a whole number of blocks).
pub fn to_f32(dtype: DType, bytes: &[u8], out: &mut [f32]) {
    let n = out.len();
    let bytes = &bytes[..dtype.row_bytes(n)];
    match dtype {
        DType::Quant(t) => crate::gguf::dequant::dequantize(t, bytes, out)
            .unwrap_or_else(|e| panic!("weights of type {t} reached compute: {e}")),
        DType::F32 => match bytemuck::try_cast_slice::<u8, f32>(bytes) {
            Ok(src) => out.copy_from_slice(src),
            Err(_) => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
        },
        DType::F16 => match bytemuck::try_cast_slice::<u8, f16>(bytes) {
            Ok(src) => src.convert_to_f32_slice(out),
            Err(_) => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
        },
        DType::BF16 => match bytemuck::try_cast_slice::<u8, bf16>(bytes) {
            Ok(src) => src.convert_to_f32_slice(out),
            Err(_) => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
        },
    }
}

/// The bytes as `&[f32]` without a copy, when they are f32 and suitably aligned.
pub fn as_f32_slice(dtype: DType, bytes: &[u8]) -> Option<&[f32]> {
    if dtype != DType::F32 {
        return None;
    }
    bytemuck::try_cast_slice(bytes).ok()
}

/// Converts f32 values into the little-endian bytes of `dtype` (round to nearest even).
pub fn from_f32(dtype: DType, values: &[f32], out: &mut Vec<u8>) {
    match dtype {
        DType::F32 => out.extend_from_slice(bytemuck::cast_slice(values)),
        DType::F16 => {
            for v in values {
                out.extend_from_slice(&f16::from_f32(*v).to_le_bytes());
            }
        }
        DType::BF16 => {
            for v in values {
                out.extend_from_slice(&bf16::from_f32(*v).to_le_bytes());
            }
        }
        DType::Quant(t) => panic!("kpg does not quantize to {t}"),
    }
}
