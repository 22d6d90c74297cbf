//! Checks of the One2Set CUDA generator: every kernel against its CPU twin on seeded random inputs
//! of awkward shapes (lengths 1, odd, just past a tile, the group limit crossed), outputs poisoned
//! with NaN; then the whole generator against the CPU backend on synth tiny and small models.

use half::bf16;

use crate::backend::cpu::layernorm::layernorm_reference;
use crate::backend::cpu::segment_attention::{
    segment_attention_reference, slot_attention_reference, Segment, SlotCache,
};
use crate::backend::cuda::one2set_attention::{
    cross_attention_forward, encoder_attention_forward, slot_attention_forward, CrossShape,
    PackedDocs, SlotShape,
};
use crate::backend::cuda::one2set_finish::{finish_forward, logits_f32, CopySource, FinishShape};
use crate::backend::cuda::one2set_layers::{
    bias_forward, decoder_input_forward, embed_forward, layernorm_forward, residual_forward,
};
use crate::backend::cuda::CudaDevice;
use crate::error::Result;
use crate::one2set::batch_layout::PackedBatch;
use crate::one2set::decode::pick_reference;
use crate::one2set::source::SourceIds;
use crate::selftest::random::{from_bf16, round_bf16, to_bf16, Rng};
use crate::selftest::{compare, Check, CheckResult, Tolerance, BF16};

pub fn checks() -> Vec<Check> {
    vec![
        Check {
            name: "one2set layers (embed, layernorm, bias, residual)",
            run: layers_check,
        },
        Check {
            name: "one2set encoder attention",
            run: encoder_attention_check,
        },
        Check {
            name: "one2set slot attention",
            run: slot_attention_check,
        },
        Check {
            name: "one2set cross attention",
            run: cross_attention_check,
        },
        Check {
            name: "one2set finish (logits + copy argmax)",
            run: finish_check,
        },
        Check {
            name: "one2set generator vs cpu",
            run: super::one2set_generator::generator_check,
        },
    ]
}

/// f32 inputs and f32 arithmetic on both sides; only exp and summation order differ.
const FINISH: Tolerance = Tolerance {
    atol: 1e-6,
    rtol: 1e-4,
    whole: 1e-4,
};

/// Head 0's probabilities, the copy distribution: f32 scores from the same bf16 keys and f32
/// queries on both sides, stored as f32; only summation order and `__expf` (a few ulp at these
/// scores, |s| < 10) differ. BF16's 1e-2 absolute would pass a uniform distribution in place of
/// any row of 65 or more keys, whose probabilities are about 1/len. tools/kernel-emu holds the
/// kernel's source to the same bound against a double reference.
const COPY_ATTENTION: Tolerance = Tolerance {
    atol: 1e-6,
    rtol: 1e-4,
    whole: 1e-4,
};

fn nan_bf16(dev: &CudaDevice, n: usize) -> Result<cudarc::driver::CudaSlice<bf16>> {
    dev.upload(&vec![bf16::NAN; n], "NaN-poisoned output")
}

fn nan_f32(dev: &CudaDevice, n: usize) -> Result<cudarc::driver::CudaSlice<f32>> {
    dev.upload(&vec![f32::NAN; n], "NaN-poisoned output")
}

fn layers_check(dev: &CudaDevice) -> Result<Vec<CheckResult>> {
    let mut rng = Rng::new(71);
    let (rows, d, vocab, n_pos, n_codes) = (37, 200, 50, 10, 7);
    let mut out = Vec::new();

    // Embedding with positions (some rows without).
    let embed = round_bf16(&rng.vec(vocab * d, 0.1));
    let table = rng.vec(n_pos * d, 1.0);
    let ids: Vec<i32> = (0..rows).map(|_| rng.below(vocab) as i32).collect();
    let pos: Vec<i32> = (0..rows)
        .map(|r| {
            if r % 5 == 0 {
                -1
            } else {
                rng.below(n_pos) as i32
            }
        })
        .collect();
    let scale = (d as f32).sqrt();
    let mut got = nan_bf16(dev, rows * d)?;
    embed_forward(
        dev,
        &mut got.as_view_mut(),
        &dev.upload(&ids, "ids")?.as_view(),
        &dev.upload(&pos, "positions")?.as_view(),
        &dev.upload(&to_bf16(&embed), "embed")?.as_view(),
        &dev.upload(&table, "pos table")?.as_view(),
        (rows, d),
        scale,
    )?;
    let mut want = vec![0f32; rows * d];
    for r in 0..rows {
        for c in 0..d {
            let p = if pos[r] < 0 {
                0.0
            } else {
                table[pos[r] as usize * d + c]
            };
            want[r * d + c] = scale * embed[ids[r] as usize * d + c] + p;
        }
    }
    out.push(compare(
        "one2set embed 37x200",
        &from_bf16(&dev.download(&got, "embed")?),
        &want,
        BF16,
    ));

    // LayerNorm over a residual stream with a large mean.
    let x: Vec<f32> = rng.vec(rows * d, 3.0).iter().map(|v| v + 5.0).collect();
    let (w, b) = (rng.vec(d, 1.0), rng.vec(d, 0.5));
    let mut got = nan_bf16(dev, rows * d)?;
    layernorm_forward(
        dev,
        &mut got.as_view_mut(),
        &dev.upload(&x, "x")?.as_view(),
        &dev.upload(&w, "weight")?.as_view(),
        &dev.upload(&b, "bias")?.as_view(),
        (rows, d),
        1e-5,
    )?;
    let mut want = vec![0f32; rows * d];
    layernorm_reference(&mut want, &x, &w, &b, 1e-5);
    out.push(compare(
        "one2set layernorm 37x200",
        &from_bf16(&dev.download(&got, "ln")?),
        &want,
        BF16,
    ));

    // Bias + ReLU in place, and bias alone.
    let n = 333;
    let y = round_bf16(&rng.vec(rows * n, 1.0));
    let bias = rng.vec(n, 0.5);
    for relu in [false, true] {
        let mut buf = dev.upload(&to_bf16(&y), "y")?;
        bias_forward(
            dev,
            &mut buf.as_view_mut(),
            &dev.upload(&bias, "bias")?.as_view(),
            (rows, n),
            relu,
        )?;
        let want: Vec<f32> = y
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let s = v + bias[i % n];
                if relu {
                    s.max(0.0)
                } else {
                    s
                }
            })
            .collect();
        let name = if relu {
            "one2set bias+relu 37x333"
        } else {
            "one2set bias 37x333"
        };
        out.push(compare(
            name,
            &from_bf16(&dev.download(&buf, "y")?),
            &want,
            BF16,
        ));
    }

    // Residual: start and accumulate.
    let y = round_bf16(&rng.vec(rows * d, 1.0));
    let bias = rng.vec(d, 0.5);
    let x0 = rng.vec(rows * d, 2.0);
    for accumulate in [false, true] {
        let mut xb = dev.upload(&x0, "x")?;
        residual_forward(
            dev,
            &mut xb.as_view_mut(),
            &dev.upload(&to_bf16(&y), "y")?.as_view(),
            &dev.upload(&bias, "bias")?.as_view(),
            (rows, d),
            accumulate,
        )?;
        let want: Vec<f32> = (0..rows * d)
            .map(|i| if accumulate { x0[i] } else { 0.0 } + y[i] + bias[i % d])
            .collect();
        let name = if accumulate {
            "one2set residual += 37x200"
        } else {
            "one2set residual = 37x200"
        };
        out.push(compare(
            name,
            &dev.download(&xb, "x")?,
            &want,
            crate::selftest::F32,
        ));
    }

    // Decoder input: + bias + position + control code.
    let codes = rng.vec(n_codes * d, 1.0);
    let pos_row = rng.vec(d, 1.0);
    let slots: Vec<i32> = (0..rows).map(|r| (r * 3 + 1) as i32).collect();
    let mut xb = nan_f32(dev, rows * d)?;
    decoder_input_forward(
        dev,
        &mut xb.as_view_mut(),
        &dev.upload(&to_bf16(&y), "y")?.as_view(),
        &dev.upload(&bias, "bias")?.as_view(),
        &dev.upload(&pos_row, "pos")?.as_view(),
        &dev.upload(&codes, "codes")?.as_view(),
        &dev.upload(&slots, "slots")?.as_view(),
        (rows, d, n_codes),
    )?;
    let want: Vec<f32> = (0..rows * d)
        .map(|i| {
            let (r, c) = (i / d, i % d);
            let code = slots[r] as usize % n_codes;
            y[i] + bias[c] + pos_row[c] + codes[code * d + c]
        })
        .collect();
    out.push(compare(
        "one2set decoder input 37x200",
        &dev.download(&xb, "x")?,
        &want,
        crate::selftest::F32,
    ));
    Ok(out)
}

/// Columns `at..at + width` of every row of a `[rows, stride]` matrix.
fn columns(m: &[f32], stride: usize, at: usize, width: usize) -> Vec<f32> {
    m.chunks(stride)
        .flat_map(|r| r[at..at + width].to_vec())
        .collect()
}

fn encoder_attention_check(dev: &CudaDevice) -> Result<Vec<CheckResult>> {
    let mut rng = Rng::new(72);
    let mut out = Vec::new();
    for (heads, hd) in [(3, 64), (4, 16), (2, 32)] {
        let d = heads * hd;
        let lens = [1usize, 63, 64, 65, 130, 7];
        let tokens: usize = lens.iter().sum();
        let qkv = round_bf16(&rng.vec(tokens * 3 * d, 1.0));
        let (mut start, mut doc_start, mut segments) = (0, Vec::new(), Vec::new());
        for &n in &lens {
            doc_start.push(start as i32);
            segments.push(Segment {
                q_start: start,
                q_len: n,
                k_start: start,
                k_len: n,
            });
            start += n;
        }
        let doc_len: Vec<i32> = lens.iter().map(|&n| n as i32).collect();
        let mut got = nan_bf16(dev, tokens * d)?;
        encoder_attention_forward(
            dev,
            &mut got.as_view_mut(),
            &dev.upload(&to_bf16(&qkv), "qkv")?.as_view(),
            &dev.upload(&doc_start, "doc_start")?.as_view(),
            &dev.upload(&doc_len, "doc_len")?.as_view(),
            PackedDocs {
                docs: lens.len(),
                tokens,
                max_len: 130,
            },
            heads,
            hd,
        )?;
        let (q, k, v) = (
            columns(&qkv, 3 * d, 0, d),
            columns(&qkv, 3 * d, d, d),
            columns(&qkv, 3 * d, 2 * d, d),
        );
        let mut want = vec![0f32; tokens * d];
        segment_attention_reference(&mut want, &mut Vec::new(), &q, &k, &v, &segments, heads, hd);
        out.push(compare(
            format!("one2set encoder attention {heads}x{hd} docs 1..130"),
            &from_bf16(&dev.download(&got, "attention")?),
            &want,
            BF16,
        ));
    }
    Ok(out)
}

fn slot_attention_check(dev: &CudaDevice) -> Result<Vec<CheckResult>> {
    let mut rng = Rng::new(73);
    let mut out = Vec::new();
    for (heads, hd, step) in [(3, 64, 3), (4, 16, 0), (2, 96, 5)] {
        let d = heads * hd;
        let (slots, max_len) = (11, 6);
        let row_slots: Vec<u32> = vec![0, 2, 3, 7, 10];
        let rows = row_slots.len();
        // Earlier steps hold values; later ones are NaN, which the kernel must not read.
        let mut k_cache = vec![f32::NAN; slots * max_len * d];
        let mut v_cache = vec![f32::NAN; slots * max_len * d];
        for s in 0..slots {
            for t in 0..step {
                let at = (s * max_len + t) * d;
                k_cache[at..at + d].copy_from_slice(&round_bf16(&rng.vec(d, 1.0)));
                v_cache[at..at + d].copy_from_slice(&round_bf16(&rng.vec(d, 1.0)));
            }
        }
        let qkv = round_bf16(&rng.vec(rows * 3 * d, 1.0));
        let bias = rng.vec(3 * d, 0.3);
        let mut k_dev = dev.upload(&to_bf16(&k_cache), "k cache")?;
        let mut v_dev = dev.upload(&to_bf16(&v_cache), "v cache")?;
        let mut got = nan_bf16(dev, rows * d)?;
        let slots_i: Vec<i32> = row_slots.iter().map(|&s| s as i32).collect();
        slot_attention_forward(
            dev,
            &mut got.as_view_mut(),
            &mut k_dev.as_view_mut(),
            &mut v_dev.as_view_mut(),
            &dev.upload(&to_bf16(&qkv), "qkv")?.as_view(),
            &dev.upload(&bias, "bias")?.as_view(),
            &dev.upload(&slots_i, "slots")?.as_view(),
            SlotShape {
                rows,
                slots,
                step,
                max_len,
                num_heads: heads,
                head_dim: hd,
            },
        )?;
        // The twin: q with its bias; k and v with theirs, rounded as the cache stores them.
        let mut q = vec![0f32; rows * d];
        let (mut new_k, mut new_v) = (Vec::new(), Vec::new());
        for (r, &s) in row_slots.iter().enumerate() {
            for c in 0..d {
                q[r * d + c] = qkv[r * 3 * d + c] + bias[c];
                let kv = round_bf16(&[
                    qkv[r * 3 * d + d + c] + bias[d + c],
                    qkv[r * 3 * d + 2 * d + c] + bias[2 * d + c],
                ]);
                let at = (s as usize * max_len + step) * d + c;
                k_cache[at] = kv[0];
                v_cache[at] = kv[1];
            }
            let at = (s as usize * max_len + step) * d;
            new_k.extend_from_slice(&k_cache[at..at + d]);
            new_v.extend_from_slice(&v_cache[at..at + d]);
        }
        let mut want = vec![0f32; rows * d];
        let cache = SlotCache {
            k: &k_cache,
            v: &v_cache,
            max_len,
        };
        slot_attention_reference(&mut want, &q, cache, &row_slots, step + 1, heads);
        out.push(compare(
            format!("one2set slot attention {heads}x{hd} step {step}"),
            &from_bf16(&dev.download(&got, "slot attention")?),
            &want,
            BF16,
        ));
        let (k_got, v_got) = (
            from_bf16(&dev.download(&k_dev, "k")?),
            from_bf16(&dev.download(&v_dev, "v")?),
        );
        let written = |cache: &[f32]| -> Vec<f32> {
            row_slots
                .iter()
                .flat_map(|&s| {
                    let at = (s as usize * max_len + step) * d;
                    cache[at..at + d].to_vec()
                })
                .collect()
        };
        out.push(compare(
            format!("one2set slot cache k {heads}x{hd} step {step}"),
            &written(&k_got),
            &new_k,
            BF16,
        ));
        out.push(compare(
            format!("one2set slot cache v {heads}x{hd} step {step}"),
            &written(&v_got),
            &new_v,
            BF16,
        ));
    }
    Ok(out)
}

fn cross_attention_check(dev: &CudaDevice) -> Result<Vec<CheckResult>> {
    let mut rng = Rng::new(74);
    let mut out = Vec::new();
    for (heads, hd) in [(3, 64), (4, 16), (2, 128), (2, 32)] {
        let d = heads * hd;
        // Rows per document: 33 crosses the 32-query group limit; a document with none is skipped.
        let lens = [5usize, 64, 129, 1, 300];
        let rows_per_doc = [3usize, 20, 1, 0, 33];
        let tokens: usize = lens.iter().sum();
        let rows: usize = rows_per_doc.iter().sum();
        let max_len = 300;
        let (mut doc_start, mut groups, mut segments) = (Vec::new(), Vec::new(), Vec::new());
        let (mut t, mut r) = (0, 0);
        for (doc, (&n, &q)) in lens.iter().zip(&rows_per_doc).enumerate() {
            doc_start.push(t as i32);
            if q > 0 {
                groups.extend([r as i32, q as i32, doc as i32]);
                segments.push(Segment {
                    q_start: r,
                    q_len: q,
                    k_start: t,
                    k_len: n,
                });
            }
            t += n;
            r += q;
        }
        let doc_len: Vec<i32> = lens.iter().map(|&n| n as i32).collect();
        let q = round_bf16(&rng.vec(rows * d, 1.0));
        let q_bias = rng.vec(d, 0.3);
        let kv = round_bf16(&rng.vec(tokens * 2 * d, 1.0));
        let mut got = nan_bf16(dev, rows * d)?;
        let mut copy = nan_f32(dev, rows * max_len)?;
        let shape = CrossShape {
            rows,
            groups: segments.len(),
            max_group_rows: 33,
            packed: PackedDocs {
                docs: lens.len(),
                tokens,
                max_len,
            },
            num_heads: heads,
            head_dim: hd,
            copy_stride: max_len,
        };
        cross_attention_forward(
            dev,
            &mut got.as_view_mut(),
            Some(&mut copy.as_view_mut()),
            &dev.upload(&to_bf16(&q), "q")?.as_view(),
            &dev.upload(&q_bias, "q bias")?.as_view(),
            &dev.upload(&to_bf16(&kv), "kv")?.as_view(),
            &dev.upload(&groups, "groups")?.as_view(),
            &dev.upload(&doc_start, "doc_start")?.as_view(),
            &dev.upload(&doc_len, "doc_len")?.as_view(),
            shape,
        )?;
        let q_full: Vec<f32> = q
            .iter()
            .enumerate()
            .map(|(i, v)| v + q_bias[i % d])
            .collect();
        let (k, v) = (columns(&kv, 2 * d, 0, d), columns(&kv, 2 * d, d, d));
        let mut want = vec![0f32; rows * d];
        let mut head0 = Vec::new();
        segment_attention_reference(&mut want, &mut head0, &q_full, &k, &v, &segments, heads, hd);
        out.push(compare(
            format!("one2set cross attention {heads}x{hd}"),
            &from_bf16(&dev.download(&got, "cross attention")?),
            &want,
            BF16,
        ));
        let copy_got = dev.download(&copy, "copy attention")?;
        let got_head0: Vec<f32> = segments
            .iter()
            .flat_map(|s| {
                let copy_got = &copy_got;
                (0..s.q_len)
                    .flat_map(move |i| copy_got[(s.q_start + i) * max_len..][..s.k_len].to_vec())
            })
            .collect();
        out.push(compare(
            format!("one2set copy attention {heads}x{hd}"),
            &got_head0,
            &head0,
            COPY_ATTENTION,
        ));
    }
    Ok(out)
}

fn finish_check(dev: &CudaDevice) -> Result<Vec<CheckResult>> {
    let mut rng = Rng::new(75);
    let mut out = Vec::new();
    let (vocab, d, n_codes) = (3001, 72, 4);
    // Three documents: repeated words, out-of-vocabulary words (ids past the vocabulary).
    let ext_docs: Vec<Vec<u32>> = vec![
        vec![10, 3002, 10, 57, 3001, 3002, 10],
        vec![400],
        (0..333)
            .map(|j| {
                if j % 7 == 0 {
                    3001 + (j % 3) as u32
                } else {
                    (j * 37 % 2999 + 2) as u32
                }
            })
            .collect(),
    ];
    let sources: Vec<SourceIds> = ext_docs
        .iter()
        .map(|e| {
            let mut index = std::collections::HashMap::new();
            let mut distinct = Vec::new();
            let distinct_at = e
                .iter()
                .map(|&x| {
                    *index.entry(x).or_insert_with(|| {
                        distinct.push(x);
                        (distinct.len() - 1) as u32
                    })
                })
                .collect();
            SourceIds {
                words: vec![String::new(); e.len()],
                ids: e.iter().map(|&x| x.min(1)).collect(),
                ext_ids: e.clone(),
                oov: Vec::new(),
                distinct,
                distinct_at,
            }
        })
        .collect();
    let refs: Vec<&SourceIds> = sources.iter().collect();
    let batch = PackedBatch::new(&refs);
    let slots: Vec<i32> = vec![0, 1, 3, 4, 8, 9, 10, 11, 2];
    let rows = slots.len();
    let stride = batch.max_len;
    for (p_gen_b, logit_scale) in [(2.0f32, 6.0f32), (-1.5, 2.0), (0.0, 0.5)] {
        let features = round_bf16(&rng.vec(rows * d, 1.0));
        let w_out = round_bf16(&rng.vec(vocab * d, logit_scale / (d as f32).sqrt()));
        let p_gen_w = rng.vec(d, 0.2);
        let mut attn = vec![f32::NAN; rows * stride];
        for (r, &s) in slots.iter().enumerate() {
            let len = batch.doc_len[s as usize / n_codes] as usize;
            let raw: Vec<f32> = rng.vec(len, 3.0).iter().map(|v| v.exp()).collect();
            let total: f32 = raw.iter().sum();
            for j in 0..len {
                attn[r * stride + j] = raw[j] / total;
            }
        }
        let feat_dev = dev.upload(&to_bf16(&features), "features")?;
        let mut logits = nan_f32(dev, rows * vocab)?;
        logits_f32(
            dev,
            &mut logits.as_view_mut(),
            &feat_dev.as_view(),
            &dev.upload(&to_bf16(&w_out), "w")?.as_view(),
            (rows, vocab, d),
        )?;
        let logits_host = dev.download(&logits, "logits")?;
        let mut picks = dev.upload(&vec![-7i32; 3 * rows], "picks")?;
        let up = |v: &[i32], what: &str| dev.upload(v, what);
        let (ext, next, first) = (
            up(&batch.ext, "ext")?,
            up(&batch.next, "next")?,
            up(&batch.first, "first")?,
        );
        finish_forward(
            dev,
            &mut picks.as_view_mut(),
            &logits.as_view(),
            &feat_dev.as_view(),
            &dev.upload(&p_gen_w, "p_gen_w")?.as_view(),
            p_gen_b,
            &dev.upload(&attn, "copy attention")?.as_view(),
            &up(&slots, "slots")?.as_view(),
            &up(&batch.doc_start, "doc_start")?.as_view(),
            &up(&batch.doc_len, "doc_len")?.as_view(),
            CopySource {
                ext: &ext.as_view(),
                next: &next.as_view(),
                first: &first.as_view(),
            },
            FinishShape {
                rows,
                vocab,
                d,
                docs: refs.len(),
                tokens: batch.tokens(),
                copy_stride: stride,
                num_codes: n_codes,
            },
        )?;
        let got = dev.download(&picks, "picks")?;
        // The logits GEMM against f64 loops, then the choice against the whole distribution.
        let logits_want = crate::selftest::ops::linear_reference(&features, &w_out, rows, vocab, d);
        out.push(compare(
            format!("one2set logits f32 {rows}x{vocab}x{d}"),
            &logits_host,
            &logits_want,
            FINISH,
        ));
        let (mut probs_got, mut probs_want, mut mismatch) = (Vec::new(), Vec::new(), None);
        for (r, &s) in slots.iter().enumerate() {
            let doc = s as usize / n_codes;
            let len = batch.doc_len[doc] as usize;
            let z: f64 = (0..d)
                .map(|c| features[r * d + c] as f64 * p_gen_w[c] as f64)
                .sum::<f64>()
                + p_gen_b as f64;
            let p_gen = (1.0 / (1.0 + (-z).exp())) as f32;
            let a = &attn[r * stride..r * stride + len];
            let (tok, p) = pick_reference(
                &logits_host[r * vocab..(r + 1) * vocab],
                p_gen,
                a,
                &ext_docs[doc],
            );
            let argmax = (0..len).fold(0, |b, j| if a[j] > a[b] { j } else { b });
            if got[r] as u32 != tok || got[rows + r] as usize != argmax {
                mismatch.get_or_insert(format!(
                    "row {r}: token {} attn argmax {} against {tok} {argmax}",
                    got[r],
                    got[rows + r]
                ));
            }
            probs_got.push(f32::from_bits(got[2 * rows + r] as u32));
            probs_want.push(p as f32);
        }
        let name = format!("one2set finish p_gen bias {p_gen_b}");
        out.push(CheckResult::exact(
            format!("{name}: tokens"),
            rows,
            mismatch,
        ));
        out.push(compare(
            format!("{name}: probabilities"),
            &probs_got,
            &probs_want,
            FINISH,
        ));
    }
    Ok(out)
}
