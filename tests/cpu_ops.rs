//! The CPU backend's fast paths held to their plain references on random inputs of awkward shapes:
//! the row-streaming and GEMM paths of `linear_forward` in every storage dtype, and paged attention
//! over random block tables against contiguous attention. Outputs and unused cache slots are
//! poisoned with NaN, so an unwritten or over-read element fails.

mod common;

use common::{assert_close, random_vec};
use kpg::backend::cpu::attention::{
    attention_reference, paged_attention_forward, paged_attention_forward_portable,
};
use kpg::backend::cpu::convert::from_f32;
use kpg::backend::cpu::linear::{linear_forward, linear_reference, LinearScratch};
use kpg::backend::paged::{PagedLayer, TokenContext};
use kpg::model::weights::{DType, WeightView};

/// Tolerances of the f32 compute (weights are widened exactly, so one table serves all dtypes).
const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

#[test]
fn linear_paths_match_reference_in_every_dtype() {
    let mut scratch = LinearScratch::default();
    let mut seed = 1;
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        for &(out, inp) in &[(1, 1), (17, 33), (257, 130), (64, 1000), (3, 4099)] {
            for rows in [1, 3, 8, 9, 37] {
                seed += 1;
                let w = random_vec(out * inp, seed);
                let x = random_vec(rows * inp, seed + 1000);
                let mut bytes = Vec::new();
                from_f32(dtype, &w, &mut bytes);
                // An odd offset makes the f32 bytes unaligned: the copy path must serve them.
                for misalign in [0usize, 1] {
                    let mut storage = vec![0u8; misalign];
                    storage.extend_from_slice(&bytes);
                    let shape = [out, inp];
                    let view = WeightView {
                        dtype,
                        shape: &shape,
                        bytes: &storage[misalign..],
                    };
                    let mut want = vec![0f32; rows * out];
                    linear_reference(&mut want, &x, view, rows);
                    let mut got = vec![f32::NAN; rows * out];
                    linear_forward(&mut got, &x, view, rows, &mut scratch);
                    let what =
                        format!("{dtype} out={out} in={inp} rows={rows} misalign={misalign}");
                    // Sums of `inp` products of order one: scale atol with sqrt(inp).
                    assert_close(&what, &got, &want, ATOL * (inp as f32).sqrt(), RTOL);
                }
            }
        }
    }
}

struct Seq {
    context: usize, // tokens already cached before the chunk
    chunk: usize,   // new query tokens
}

/// Runs one batch through paged attention and compares each sequence with the reference.
fn check_paged_attention(
    seqs: &[Seq],
    heads: usize,
    kv_heads: usize,
    hd: usize,
    bs: usize,
    seed: u64,
) {
    let total_blocks: usize = seqs
        .iter()
        .map(|s| (s.context + s.chunk).div_ceil(bs))
        .sum::<usize>()
        + 3;
    let row = kv_heads * hd;
    // Unused slots stay NaN: reading one poisons the output.
    let mut k_cache = vec![f32::NAN; total_blocks * bs * row];
    let mut v_cache = vec![f32::NAN; total_blocks * bs * row];
    // A random permutation of physical blocks, handed out to the sequences in turn.
    let mut perm: Vec<u32> = (0..total_blocks as u32).collect();
    let r = random_vec(total_blocks, seed);
    perm.sort_by(|a, b| r[*a as usize].partial_cmp(&r[*b as usize]).unwrap());
    let mut next = 0;
    let mut tables = Vec::new();
    let (mut q, mut token_seq, mut token_pos) = (Vec::new(), Vec::new(), Vec::new());
    let mut refs = Vec::new();
    for (i, s) in seqs.iter().enumerate() {
        let len = s.context + s.chunk;
        let nblocks = len.div_ceil(bs);
        let table: Vec<u32> = perm[next..next + nblocks].to_vec();
        next += nblocks;
        let k = random_vec(len * row, seed + 10 * i as u64 + 1);
        let v = random_vec(len * row, seed + 10 * i as u64 + 2);
        for pos in 0..len {
            let slot = table[pos / bs] as usize * bs + pos % bs;
            k_cache[slot * row..(slot + 1) * row].copy_from_slice(&k[pos * row..(pos + 1) * row]);
            v_cache[slot * row..(slot + 1) * row].copy_from_slice(&v[pos * row..(pos + 1) * row]);
        }
        let qs = random_vec(s.chunk * heads * hd, seed + 10 * i as u64 + 3);
        for t in 0..s.chunk {
            token_seq.push(i as u32);
            token_pos.push((s.context + t) as u32);
        }
        let mut want = vec![0f32; s.chunk * heads * hd];
        attention_reference(&mut want, &qs, &k, &v, s.context, heads, kv_heads, hd);
        q.extend_from_slice(&qs);
        refs.push(want);
        tables.push(table);
    }
    let table_refs: Vec<&[u32]> = tables.iter().map(|t| t.as_slice()).collect();
    let ctx = TokenContext {
        token_seq: &token_seq,
        token_pos: &token_pos,
        block_tables: &table_refs,
    };
    let layer = PagedLayer {
        k: &k_cache,
        v: &v_cache,
        block_size: bs,
        num_kv_heads: kv_heads,
        head_dim: hd,
    };
    for (path, attend) in [
        ("fast", paged_attention_forward as AttentionFn),
        ("portable", paged_attention_forward_portable as AttentionFn),
    ] {
        let mut out = vec![f32::NAN; q.len()];
        attend(&mut out, &q, layer, &ctx, heads);
        check_against(path, &out, seqs, &refs, heads, kv_heads, hd, bs);
    }
}

type AttentionFn = fn(&mut [f32], &[f32], PagedLayer<'_>, &TokenContext<'_>, usize);

#[allow(clippy::too_many_arguments)]
fn check_against(
    path: &str,
    out: &[f32],
    seqs: &[Seq],
    refs: &[Vec<f32>],
    heads: usize,
    kv_heads: usize,
    hd: usize,
    bs: usize,
) {
    let mut start = 0;
    for (i, (s, want)) in seqs.iter().zip(refs).enumerate() {
        let got = &out[start..start + s.chunk * heads * hd];
        let what = format!(
            "{path}: seq {i} (context {}, chunk {}) heads={heads} kv={kv_heads} hd={hd} bs={bs}",
            s.context, s.chunk
        );
        assert_close(&what, got, want, ATOL, RTOL);
        start += got.len();
    }
}

#[test]
fn paged_attention_matches_contiguous_reference() {
    let mut seed = 100;
    for &(heads, kv_heads) in &[(4, 4), (8, 2), (16, 2)] {
        for &hd in &[8, 12, 24, 64] {
            for &bs in &[1, 3, 16] {
                seed += 1;
                // Lengths 1, odd, long; prefill chunks, forced-text chunks and single decode tokens.
                let seqs = [
                    Seq {
                        context: 0,
                        chunk: 1,
                    },
                    Seq {
                        context: 0,
                        chunk: 37,
                    },
                    Seq {
                        context: 19,
                        chunk: 1,
                    },
                    Seq {
                        context: 50,
                        chunk: 7,
                    },
                    Seq {
                        context: 3,
                        chunk: 130,
                    },
                ];
                check_paged_attention(&seqs, heads, kv_heads, hd, bs, seed);
            }
        }
    }
}

/// Random blocks of `ty`, every quant bit pattern allowed, the f16 scales set to sane values.
fn random_blocks(ty: kpg::gguf::types::GgmlType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    use kpg::gguf::types::GgmlType as G;
    let (per_block, block_bytes) = ty.block();
    let blocks = rows * cols / per_block as usize;
    let noise = random_vec(blocks * block_bytes as usize, seed);
    let mut w: Vec<u8> = noise.iter().map(|v| (v.to_bits() >> 7) as u8).collect();
    let scales = random_vec(2 * blocks, seed + 1);
    for (i, b) in w.chunks_exact_mut(block_bytes as usize).enumerate() {
        let d = half::f16::from_f32(0.05 * scales[2 * i]).to_le_bytes();
        let m = half::f16::from_f32(0.2 * scales[2 * i + 1]).to_le_bytes();
        match ty {
            G::Q6_K => b[208..210].copy_from_slice(&d),
            _ => {
                b[..2].copy_from_slice(&d);
                if matches!(ty, G::Q4_1 | G::Q5_1 | G::Q4_K | G::Q5_K) {
                    b[2..4].copy_from_slice(&m);
                }
            }
        }
    }
    w
}

/// `linear_forward` and `linear_forward_many` on GGUF blocks: at decode sizes the integer types
/// compute with the activations rounded to Q8 blocks, so they are held to the reference on those
/// rounded activations; the K types (widened a row at a time) and the GEMM path (more than 8
/// rows) to the reference on the activations themselves.
#[test]
fn linear_paths_on_ggml_blocks_match_the_reference() {
    use kpg::backend::cpu::linear::linear_forward_many;
    use kpg::backend::cpu::quant::{has_integer_kernel, quantize_row, BlockQ8, QK};
    use kpg::gguf::types::GgmlType as G;
    let mut scratch = LinearScratch::default();
    let mut seed = 7000;
    for ty in [
        G::Q4_0,
        G::Q4_1,
        G::Q5_0,
        G::Q5_1,
        G::Q8_0,
        G::Q4_K,
        G::Q5_K,
        G::Q6_K,
    ] {
        for &(out, inp) in &[(1, 256), (17, 512), (70, 256)] {
            for rows in [1, 3, 8, 9] {
                seed += 3;
                let bytes = random_blocks(ty, out, inp, seed);
                let shape = [out, inp];
                let view = WeightView {
                    dtype: DType::Quant(ty),
                    shape: &shape,
                    bytes: &bytes,
                };
                let x = random_vec(rows * inp, seed + 1);
                let integer = has_integer_kernel(ty) && rows <= 8;
                let x_seen: Vec<f32> = if integer {
                    let mut q = vec![BlockQ8::default(); inp / QK];
                    x.chunks(inp)
                        .flat_map(|row| {
                            quantize_row(row, &mut q);
                            q.iter()
                                .flat_map(|b| b.q.iter().map(|&v| b.d * v as f32))
                                .collect::<Vec<_>>()
                        })
                        .collect()
                } else {
                    x.clone()
                };
                let mut want = vec![0f32; rows * out];
                linear_reference(&mut want, &x_seen, view, rows);
                let mut got = vec![f32::NAN; rows * out];
                linear_forward(&mut got, &x, view, rows, &mut scratch);
                let what = format!("{ty} out={out} in={inp} rows={rows}");
                assert_close(&what, &got, &want, 1e-4 * (inp as f32).sqrt(), 1e-4);
                // Two products of one input in one pass: each as it is alone.
                let (mut a, mut b) = (vec![f32::NAN; rows * out], vec![f32::NAN; rows * out]);
                linear_forward_many(&mut [&mut a, &mut b], &x, &[view, view], rows, &mut scratch);
                assert_eq!(a, got, "{what}: first of two");
                assert_eq!(b, got, "{what}: second of two");
            }
        }
    }
}
