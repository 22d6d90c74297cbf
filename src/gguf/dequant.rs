//! ggml's block formats back to f32, element for element as ggml's reference
//! `dequantize_row_*` (and the `gguf` Python package's `quants.dequantize`, which the tests hold
//! this to bit for bit): the same products in the same order, in f32.
//!
//! Block layouts (bytes; `d`, `m`, `dmin` are f16):
//!
//! | type | elements | layout |
//! |---|---:|---|
//! | Q4_0 | 32 | d, qs[16]: element j < 16 is the low nibble of qs[j], j >= 16 the high nibble of qs[j-16]; x = d·(q − 8) |
//! | Q4_1 | 32 | d, m, qs[16]: x = d·q + m |
//! | Q5_0 | 32 | d, qh (u32), qs[16]: bit j of qh is the fifth bit of element j; x = d·(q − 16) |
//! | Q5_1 | 32 | d, m, qh, qs[16]: x = d·q + m |
//! | Q8_0 | 32 | d, qs[32] (i8): x = d·q |
//! | Q4_K | 256 | d, dmin, scales[12] (8 six-bit scales and mins), qs[128]: sub-block s of 32 is the low (s even) or high (s odd) nibbles of qs[32·(s/2)..]; x = (d·sc)·q − dmin·min |
//! | Q5_K | 256 | d, dmin, scales[12], qh[32], qs[128]: as Q4_K, the fifth bit of element l of sub-block s is bit s of qh[l] |
//! | Q6_K | 256 | ql[128], qh[64], scales[16] (i8), d: x = (d·scale[e/16])·(q − 32) |

use half::{bf16, f16};

use super::types::GgmlType;

/// Dequantizes `bytes` (whole blocks of `ty`) into `out` (one f32 per element). `Err` names a
/// type kpg cannot read.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), String> {
    let (per_block, block_bytes) = ty.block();
    let (per_block, block_bytes) = (per_block as usize, block_bytes as usize);
    assert_eq!(
        bytes.len() / block_bytes * per_block,
        out.len(),
        "whole blocks"
    );
    let blocks = bytes
        .chunks_exact(block_bytes)
        .zip(out.chunks_exact_mut(per_block));
    match ty {
        GgmlType::F32 => blocks.for_each(|(b, o)| o[0] = f32::from_le_bytes(b.try_into().unwrap())),
        GgmlType::F16 => blocks.for_each(|(b, o)| o[0] = half(b, 0)),
        GgmlType::BF16 => {
            blocks.for_each(|(b, o)| o[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32())
        }
        GgmlType::Q4_0 => blocks.for_each(|(b, o)| q4_0(b, o)),
        GgmlType::Q4_1 => blocks.for_each(|(b, o)| q4_1(b, o)),
        GgmlType::Q5_0 => blocks.for_each(|(b, o)| q5_0(b, o)),
        GgmlType::Q5_1 => blocks.for_each(|(b, o)| q5_1(b, o)),
        GgmlType::Q8_0 => blocks.for_each(|(b, o)| q8_0(b, o)),
        GgmlType::Q4_K => blocks.for_each(|(b, o)| q4_k(b, o)),
        GgmlType::Q5_K => blocks.for_each(|(b, o)| q5_k(b, o)),
        GgmlType::Q6_K => blocks.for_each(|(b, o)| q6_k(b, o)),
        other => {
            return Err(format!(
                "tensor type {other} is not supported (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, \
                 Q8_0, Q4_K, Q5_K, Q6_K are)"
            ))
        }
    }
    Ok(())
}

/// Whether [`dequantize`] reads `ty`.
pub fn supported(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        F32 | F16 | BF16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q4_K | Q5_K | Q6_K
    )
}

/// The f16 at `at`, as f32.
fn half(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Element j of 32 from 16 packed nibble bytes.
fn nibble(qs: &[u8], j: usize) -> u8 {
    if j < 16 {
        qs[j] & 0x0F
    } else {
        qs[j - 16] >> 4
    }
}

fn q4_0(b: &[u8], out: &mut [f32]) {
    let d = half(b, 0);
    for (j, o) in out.iter_mut().enumerate() {
        *o = d * (nibble(&b[2..], j) as i8 - 8) as f32;
    }
}

fn q4_1(b: &[u8], out: &mut [f32]) {
    let (d, m) = (half(b, 0), half(b, 2));
    for (j, o) in out.iter_mut().enumerate() {
        *o = d * nibble(&b[4..], j) as f32 + m;
    }
}

/// The five-bit value of element j: its nibble and bit j of `qh`.
fn five_bits(qh: u32, qs: &[u8], j: usize) -> u8 {
    nibble(qs, j) | ((((qh >> j) & 1) as u8) << 4)
}

fn q5_0(b: &[u8], out: &mut [f32]) {
    let d = half(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for (j, o) in out.iter_mut().enumerate() {
        *o = d * (five_bits(qh, &b[6..], j) as i8 - 16) as f32;
    }
}

fn q5_1(b: &[u8], out: &mut [f32]) {
    let (d, m) = (half(b, 0), half(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for (j, o) in out.iter_mut().enumerate() {
        *o = d * five_bits(qh, &b[8..], j) as f32 + m;
    }
}

fn q8_0(b: &[u8], out: &mut [f32]) {
    let d = half(b, 0);
    for (j, o) in out.iter_mut().enumerate() {
        *o = b[2 + j] as i8 as f32 * d;
    }
}

/// The eight six-bit (scale, min) pairs of a Q4_K/Q5_K block's 12 scale bytes.
fn scale_min(s: &[u8], sub: usize) -> (u8, u8) {
    if sub < 4 {
        (s[sub] & 0x3F, s[sub + 4] & 0x3F)
    } else {
        let k = sub - 4;
        (
            (s[k + 8] & 0x0F) | ((s[k] >> 2) & 0x30),
            (s[k + 8] >> 4) | ((s[k + 4] >> 2) & 0x30),
        )
    }
}

fn q4_k(b: &[u8], out: &mut [f32]) {
    let (d, dmin) = (half(b, 0), half(b, 2));
    let (scales, qs) = (&b[4..16], &b[16..144]);
    for (sub, chunk) in out.chunks_exact_mut(32).enumerate() {
        let (sc, mn) = scale_min(scales, sub);
        let (dl, ml) = (d * sc as f32, dmin * mn as f32);
        let group = &qs[32 * (sub / 2)..32 * (sub / 2) + 32];
        for (l, o) in chunk.iter_mut().enumerate() {
            let q = if sub % 2 == 0 {
                group[l] & 0x0F
            } else {
                group[l] >> 4
            };
            *o = dl * q as f32 - ml;
        }
    }
}

fn q5_k(b: &[u8], out: &mut [f32]) {
    let (d, dmin) = (half(b, 0), half(b, 2));
    let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
    for (sub, chunk) in out.chunks_exact_mut(32).enumerate() {
        let (sc, mn) = scale_min(scales, sub);
        let (dl, ml) = (d * sc as f32, dmin * mn as f32);
        let group = &qs[32 * (sub / 2)..32 * (sub / 2) + 32];
        for (l, o) in chunk.iter_mut().enumerate() {
            let low = if sub % 2 == 0 {
                group[l] & 0x0F
            } else {
                group[l] >> 4
            };
            let q = low | (((qh[l] >> sub) & 1) << 4);
            *o = dl * q as f32 - ml;
        }
    }
}

fn q6_k(b: &[u8], out: &mut [f32]) {
    let (ql, qh, scales) = (&b[..128], &b[128..192], &b[192..208]);
    let d = half(b, 208);
    // Two halves of 128 elements; in each, element l (of 32) of the four quarters takes its low
    // four bits from ql and its top two from qh, as ggml's dequantize_row_q6_K.
    for half_idx in 0..2 {
        let (ql, qh) = (&ql[64 * half_idx..], &qh[32 * half_idx..]);
        for l in 0..32 {
            let q = [
                (ql[l] & 0x0F) | ((qh[l] & 3) << 4),
                (ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4),
                (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
            ];
            for (quarter, &q) in q.iter().enumerate() {
                let e = 128 * half_idx + 32 * quarter + l;
                let scale = scales[e / 16] as i8 as f32;
                out[e] = (d * scale) * (q as i8 - 32) as f32;
            }
        }
    }
}
