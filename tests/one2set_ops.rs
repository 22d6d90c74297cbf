//! The CPU ops of the One2Set generator held to their plain references on awkward shapes:
//! LayerNorm, bias (+ReLU), sinusoidal positions, block-diagonal segment attention (with head-0
//! probabilities) and per-slot decoder self-attention. Outputs are poisoned with NaN first, so an
//! unwritten element fails.

mod common;

use common::{assert_close, random_vec};
use kpg::backend::cpu::bias::{bias_add_forward, bias_relu_forward};
use kpg::backend::cpu::layernorm::{layernorm_forward, layernorm_reference};
use kpg::backend::cpu::segment_attention::{
    head0_offsets, segment_attention_forward, segment_attention_reference, slot_attention_forward,
    slot_attention_reference, Segment, SlotCache,
};
use kpg::backend::cpu::sinusoid::SinusoidTable;

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

#[test]
fn layernorm_matches_reference() {
    for &(rows, dim) in &[(1, 2), (3, 7), (17, 64), (40, 36), (5, 513)] {
        let x: Vec<f32> = random_vec(rows * dim, 3)
            .iter()
            .map(|v| 4.0 * v + 1.5)
            .collect();
        let w = random_vec(dim, 4);
        let b = random_vec(dim, 5);
        let mut want = vec![0f32; rows * dim];
        layernorm_reference(&mut want, &x, &w, &b, 1e-5);
        let mut got = vec![f32::NAN; rows * dim];
        layernorm_forward(&mut got, &x, &w, &b, 1e-5);
        assert_close(&format!("layernorm {rows}x{dim}"), &got, &want, ATOL, RTOL);
    }
}

#[test]
fn bias_and_relu() {
    let (rows, dim) = (37, 11);
    let y0 = random_vec(rows * dim, 8);
    let b = random_vec(dim, 9);
    let mut y = y0.clone();
    bias_add_forward(&mut y, &b);
    let mut r = y0.clone();
    bias_relu_forward(&mut r, &b);
    for i in 0..rows * dim {
        let want = y0[i] + b[i % dim];
        assert_eq!(y[i], want);
        assert_eq!(r[i], want.max(0.0));
    }
}

#[test]
fn sinusoid_table_follows_the_one2set_formula() {
    let dim = 10;
    let t = SinusoidTable::new(50, dim);
    assert_eq!(t.rows(), 50);
    assert!(
        t.row(0).iter().all(|&v| v == 0.0),
        "row 0 is the padding row"
    );
    for pos in [1usize, 2, 49] {
        for i in 0..dim {
            let angle = pos as f64 / 10000f64.powf((2 * (i / 2)) as f64 / dim as f64);
            let want = if i % 2 == 0 { angle.sin() } else { angle.cos() };
            assert!(
                (t.row(pos)[i] as f64 - want).abs() < 1e-6,
                "pos {pos} dim {i}"
            );
        }
    }
}

#[test]
fn segment_attention_matches_reference() {
    // Segments with shared and separate key ranges.
    // (num_heads, head_dim, segments as (q_len, k_len))
    type Case<'a> = (usize, usize, &'a [(usize, usize)]);
    let cases: &[Case] = &[
        (1, 1, &[(1, 1)]),
        (4, 16, &[(7, 7), (1, 33), (20, 5)]),
        (3, 12, &[(6, 40), (6, 1), (2, 17)]),
        (8, 64, &[(20, 250), (13, 97)]),
    ];
    let mut seed = 10;
    for &(heads, hd, shape) in cases {
        let row = heads * hd;
        let mut segments = Vec::new();
        let (mut q_rows, mut k_rows) = (0, 0);
        for &(ql, kl) in shape {
            segments.push(Segment {
                q_start: q_rows,
                q_len: ql,
                k_start: k_rows,
                k_len: kl,
            });
            q_rows += ql;
            k_rows += kl;
        }
        seed += 3;
        let q: Vec<f32> = random_vec(q_rows * row, seed)
            .iter()
            .map(|v| 3.0 * v)
            .collect();
        let k: Vec<f32> = random_vec(k_rows * row, seed + 1)
            .iter()
            .map(|v| 3.0 * v)
            .collect();
        let v = random_vec(k_rows * row, seed + 2);
        let mut want = vec![0f32; q_rows * row];
        let mut want_head0 = Vec::new();
        segment_attention_reference(&mut want, &mut want_head0, &q, &k, &v, &segments, heads, hd);
        let mut at = Vec::new();
        let total = head0_offsets(&segments, &mut at);
        let mut got = vec![f32::NAN; q_rows * row];
        let mut head0 = vec![f32::NAN; total];
        segment_attention_forward(
            &mut got,
            Some(&mut head0),
            &q,
            &k,
            &v,
            &segments,
            heads,
            hd,
            &at,
        );
        let what = format!("segment attention heads={heads} hd={hd} {shape:?}");
        assert_close(&what, &got, &want, ATOL, RTOL);
        assert_close(&format!("{what} head 0"), &head0, &want_head0, 1e-6, RTOL);
        // Without head 0 the output is the same.
        let mut again = vec![f32::NAN; q_rows * row];
        segment_attention_forward(&mut again, None, &q, &k, &v, &segments, heads, hd, &[]);
        assert_eq!(again, got);
    }
}

#[test]
fn slot_attention_matches_reference() {
    for &(heads, hd, slots, max_len) in
        &[(1, 2, 1, 1), (4, 8, 9, 6), (3, 12, 20, 4), (8, 64, 40, 6)]
    {
        let row = heads * hd;
        let k = random_vec(slots * max_len * row, 21);
        let v = random_vec(slots * max_len * row, 22);
        // Every other slot, backwards order not allowed: the model passes ascending slots, but the
        // op itself takes any.
        let row_slot: Vec<u32> = (0..slots as u32)
            .filter(|s| s % 2 == 0 || slots < 3)
            .collect();
        let q = random_vec(row_slot.len() * row, 23);
        let cache = SlotCache {
            k: &k,
            v: &v,
            max_len,
        };
        for len in 1..=max_len {
            let mut want = vec![0f32; q.len()];
            slot_attention_reference(&mut want, &q, cache, &row_slot, len, heads);
            let mut got = vec![f32::NAN; q.len()];
            slot_attention_forward(&mut got, &q, cache, &row_slot, len, heads);
            let what = format!("slot attention heads={heads} hd={hd} slots={slots} len={len}");
            assert_close(&what, &got, &want, ATOL, RTOL);
        }
    }
}

/// Keys past `len` (not yet written in a real decode) must not be read.
#[test]
fn slot_attention_ignores_keys_past_the_step() {
    let (heads, hd, slots, max_len) = (2, 4, 3, 6);
    let row = heads * hd;
    let mut k = random_vec(slots * max_len * row, 31);
    let mut v = random_vec(slots * max_len * row, 32);
    let len = 3;
    for s in 0..slots {
        for j in len..max_len {
            let at = (s * max_len + j) * row;
            k[at..at + row].fill(f32::NAN);
            v[at..at + row].fill(f32::NAN);
        }
    }
    let q = random_vec(slots * row, 33);
    let row_slot: Vec<u32> = (0..slots as u32).collect();
    let mut got = vec![f32::NAN; q.len()];
    let cache = SlotCache {
        k: &k,
        v: &v,
        max_len,
    };
    slot_attention_forward(&mut got, &q, cache, &row_slot, len, heads);
    assert!(got.iter().all(|x| x.is_finite()));
}

#[test]
fn softmax_stats_match_reference() {
    use kpg::backend::cpu::softmax_stats::{softmax_stats_reference, SoftmaxStats};
    let mut stats = SoftmaxStats::default();
    for &(vocab, rows) in &[(1, 1), (7, 3), (33, 17), (1000, 9), (50_000, 2), (3001, 64)] {
        let x: Vec<f32> = random_vec(vocab * rows, vocab as u64)
            .iter()
            .map(|v| 8.0 * v)
            .collect();
        let (max, arg, sum) = softmax_stats_reference(&x, rows);
        stats.compute(&x, rows);
        assert_eq!(stats.max, max, "{vocab}x{rows} max");
        assert_eq!(stats.argmax, arg, "{vocab}x{rows} argmax");
        for (r, (&got, &want)) in stats.sum.iter().zip(&sum).enumerate() {
            let rel = (got as f64 - want).abs() / want;
            assert!(rel < 1e-5, "{vocab}x{rows} row {r}: sum {got} vs {want}");
        }
    }
}

/// The first of equal maxima wins, also across the tasks' vocabulary ranges.
#[test]
fn softmax_stats_ties_go_to_the_first_index() {
    use kpg::backend::cpu::softmax_stats::SoftmaxStats;
    let (vocab, rows) = (10_000, 3);
    let mut x = vec![0f32; vocab * rows];
    for &o in &[9_999usize, 4_321, 77] {
        for r in 0..rows {
            x[o * rows + r] = 5.0;
        }
    }
    let mut stats = SoftmaxStats::default();
    stats.compute(&x, rows);
    assert_eq!(stats.argmax, vec![77; rows]);
}

#[test]
fn dense_forward_matches_reference_in_every_dtype() {
    use kpg::backend::cpu::convert::from_f32;
    use kpg::backend::cpu::dense::dense_forward;
    use kpg::backend::cpu::linear::{linear_reference, LinearScratch};
    use kpg::model::weights::{DType, WeightView};
    let mut scratch = LinearScratch::default();
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        for &(out, inp) in &[(1, 1), (17, 33), (130, 64), (50, 301)] {
            for rows in [1, 8, 9, 40, 133] {
                let w = random_vec(out * inp, (out * inp + rows) as u64);
                let x = random_vec(rows * inp, rows as u64);
                let mut bytes = Vec::new();
                from_f32(dtype, &w, &mut bytes);
                let shape = [out, inp];
                let view = WeightView {
                    dtype,
                    shape: &shape,
                    bytes: &bytes,
                };
                let mut want = vec![0f32; rows * out];
                linear_reference(&mut want, &x, view, rows);
                let mut got = vec![f32::NAN; rows * out];
                dense_forward(&mut got, &x, view, rows, &mut scratch);
                let what = format!("dense {dtype} out={out} in={inp} rows={rows}");
                assert_close(&what, &got, &want, ATOL * (inp as f32).sqrt(), RTOL);
            }
        }
    }
}
