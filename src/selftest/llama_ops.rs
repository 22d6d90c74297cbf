//! The LLaMA block's small kernels against their CPU twins, on bf16-rounded random inputs of
//! awkward sizes, with every output NaN-poisoned before the launch.

use cudarc::driver::CudaSlice;
use half::bf16;

use crate::backend::cpu::activation::{residual_add_forward, silu_mul_forward};
use crate::backend::cpu::norm::rmsnorm_forward;
use crate::backend::cpu::rope::RopeTable;
use crate::backend::cuda::llama_ops::{self, QkvShape};
use crate::backend::cuda::CudaDevice;
use crate::error::Result;
use crate::model::config::{RopeConfig, RopeScaling};
use crate::selftest::random::{from_bf16, round_bf16, to_bf16, Rng};
use crate::selftest::{compare, Check, CheckResult, BF16, F32};

pub fn checks() -> Vec<Check> {
    vec![
        Check {
            name: "rmsnorm",
            run: rmsnorm_check,
        },
        Check {
            name: "rope + kv write",
            run: rope_check,
        },
        Check {
            name: "silu_mul, residual_add, embedding",
            run: elementwise_check,
        },
        Check {
            name: "label head",
            run: label_head_check,
        },
        Check {
            name: "argmax",
            run: argmax_check,
        },
    ]
}

fn nan_bf16(dev: &CudaDevice, n: usize) -> Result<CudaSlice<bf16>> {
    dev.upload(&vec![bf16::NAN; n], "a NaN-poisoned output")
}

fn nan_f32(dev: &CudaDevice, n: usize) -> Result<CudaSlice<f32>> {
    dev.upload(&vec![f32::NAN; n], "a NaN-poisoned output")
}

fn rmsnorm_check(dev: &CudaDevice) -> Result<Vec<CheckResult>> {
    let mut rng = Rng::new(11);
    let mut rows_out = Vec::new();
    for (rows, dim) in [(1, 7), (3, 128), (17, 4096), (5, 5000)] {
        let x = rng.vec(rows * dim, 2.0);
        let delta = round_bf16(&rng.vec(rows * dim, 1.0));
        let w = rng.vec(dim, 1.0);
        let eps = 1e-5;
        // Plain norm.
        let mut want = vec![0f32; rows * dim];
        rmsnorm_forward(&mut want, &x, &w, eps);
        let x_dev = dev.upload(&x, "x")?;
        let w_dev = dev.upload(&w, "w")?;
        let mut out = nan_bf16(dev, rows * dim)?;
        llama_ops::rmsnorm(
            dev,
            &mut out.as_view_mut(),
            &x_dev.as_view(),
            &w_dev.as_view(),
            rows,
            eps,
        )?;
        let got = from_bf16(&dev.download(&out, "out")?);
        rows_out.push(compare(format!("rmsnorm {rows}x{dim}"), &got, &want, BF16));
        // Residual add, then norm.
        let mut x_sum = x.clone();
        residual_add_forward(&mut x_sum, &delta);
        rmsnorm_forward(&mut want, &x_sum, &w, eps);
        let mut x_dev = dev.upload(&x, "x")?;
        let d_dev = dev.upload(&to_bf16(&delta), "delta")?;
        let mut out = nan_bf16(dev, rows * dim)?;
        llama_ops::residual_rmsnorm(
            dev,
            &mut out.as_view_mut(),
            &mut x_dev.as_view_mut(),
            &d_dev.as_view(),
            &w_dev.as_view(),
            rows,
            eps,
        )?;
        let got = from_bf16(&dev.download(&out, "out")?);
        rows_out.push(compare(
            format!("residual+rmsnorm {rows}x{dim}"),
            &got,
            &want,
            BF16,
        ));
        let got_x = dev.download(&x_dev, "x")?;
        rows_out.push(compare(
            format!("residual+rmsnorm {rows}x{dim} (stream)"),
            &got_x,
            &x_sum,
            F32,
        ));
    }
    Ok(rows_out)
}

fn rope_check(dev: &CudaDevice) -> Result<Vec<CheckResult>> {
    let mut rng = Rng::new(12);
    let mut out = Vec::new();
    let llama3 = RopeScaling::Llama3 {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 8192.0,
    };
    let cases = [
        ("default", 4, 4, 32, RopeScaling::None, 10_000.0),
        (
            "gqa4",
            8,
            2,
            64,
            RopeScaling::Linear { factor: 2.0 },
            10_000.0,
        ),
        ("llama3 gqa8", 32, 4, 128, llama3, 500_000.0),
    ];
    for (name, heads, kv_heads, head_dim, scaling, theta) in cases {
        let tokens = 37;
        let num_slots = 64;
        let (q_dim, kv_dim) = (heads * head_dim, kv_heads * head_dim);
        let row = q_dim + 2 * kv_dim;
        let qkv = round_bf16(&rng.vec(tokens * row, 1.0));
        // Positions up to 100k exercise large angles; slots are a random injection, a few -1.
        let pos: Vec<u32> = (0..tokens).map(|_| rng.below(100_000) as u32).collect();
        let perm = rng.permutation(num_slots);
        let slots: Vec<i64> = (0..tokens)
            .map(|t| if t % 11 == 5 { -1 } else { perm[t] as i64 })
            .collect();
        let table = RopeTable::new(&RopeConfig { theta, scaling }, head_dim);
        // CPU twin: rotate q and k, then write k and v at their slots.
        let mut q = Vec::with_capacity(tokens * q_dim);
        let mut k = Vec::with_capacity(tokens * kv_dim);
        let mut v = Vec::with_capacity(tokens * kv_dim);
        for t in 0..tokens {
            let r = &qkv[t * row..(t + 1) * row];
            q.extend_from_slice(&r[..q_dim]);
            k.extend_from_slice(&r[q_dim..q_dim + kv_dim]);
            v.extend_from_slice(&r[q_dim + kv_dim..]);
        }
        table.rope_forward(&mut q, &pos);
        table.rope_forward(&mut k, &pos);
        let mut k_cache = vec![f32::NAN; num_slots * kv_dim];
        let mut v_cache = vec![f32::NAN; num_slots * kv_dim];
        for t in 0..tokens {
            if slots[t] >= 0 {
                let s = slots[t] as usize;
                k_cache[s * kv_dim..(s + 1) * kv_dim]
                    .copy_from_slice(&k[t * kv_dim..(t + 1) * kv_dim]);
                v_cache[s * kv_dim..(s + 1) * kv_dim]
                    .copy_from_slice(&v[t * kv_dim..(t + 1) * kv_dim]);
            }
        }
        let mut q_dev = nan_bf16(dev, tokens * q_dim)?;
        let mut k_dev = nan_bf16(dev, num_slots * kv_dim)?;
        let mut v_dev = nan_bf16(dev, num_slots * kv_dim)?;
        llama_ops::rope_write_kv(
            dev,
            &mut q_dev.as_view_mut(),
            &mut k_dev.as_view_mut(),
            &mut v_dev.as_view_mut(),
            &dev.upload(&to_bf16(&qkv), "qkv")?.as_view(),
            &dev.upload(&pos, "positions")?.as_view(),
            &dev.upload(&slots, "slots")?.as_view(),
            &dev.upload(table.inv_freq(), "inv_freq")?.as_view(),
            QkvShape {
                num_heads: heads,
                num_kv_heads: kv_heads,
                head_dim,
            },
            tokens,
        )?;
        let got_q = from_bf16(&dev.download(&q_dev, "q")?);
        out.push(compare(format!("rope q {name}"), &got_q, &q, BF16));
        // Unwritten slots must stay NaN on both sides: compare them as equal-NaN by zeroing.
        let zero_nan = |x: Vec<f32>| -> Vec<f32> {
            x.into_iter()
                .map(|v| if v.is_nan() { 0.0 } else { v })
                .collect()
        };
        let written = |c: &[f32]| c.iter().filter(|v| !v.is_nan()).count();
        let got_k = from_bf16(&dev.download(&k_dev, "k cache")?);
        let got_v = from_bf16(&dev.download(&v_dev, "v cache")?);
        let wrong_slots =
            written(&got_k) != written(&k_cache) || written(&got_v) != written(&v_cache);
        let mut rk = compare(
            format!("rope k into cache {name}"),
            &zero_nan(got_k),
            &zero_nan(k_cache),
            BF16,
        );
        if wrong_slots {
            rk.passed = false;
            rk.detail = "the kernel wrote a different set of cache slots".into();
        }
        out.push(rk);
        out.push(compare(
            format!("v into cache {name}"),
            &zero_nan(got_v),
            &zero_nan(v_cache),
            F32,
        ));
    }
    Ok(out)
}

fn elementwise_check(dev: &CudaDevice) -> Result<Vec<CheckResult>> {
    let mut rng = Rng::new(13);
    let mut out = Vec::new();
    for (rows, inter) in [(1, 1), (3, 344), (19, 11008)] {
        let gate_up = round_bf16(&rng.vec(rows * 2 * inter, 4.0));
        let mut gate = Vec::with_capacity(rows * inter);
        let mut up = Vec::with_capacity(rows * inter);
        for r in 0..rows {
            gate.extend_from_slice(&gate_up[r * 2 * inter..r * 2 * inter + inter]);
            up.extend_from_slice(&gate_up[r * 2 * inter + inter..(r + 1) * 2 * inter]);
        }
        silu_mul_forward(&mut gate, &up);
        let mut act = nan_bf16(dev, rows * inter)?;
        llama_ops::silu_mul(
            dev,
            &mut act.as_view_mut(),
            &dev.upload(&to_bf16(&gate_up), "gate_up")?.as_view(),
            rows,
            inter,
        )?;
        let got = from_bf16(&dev.download(&act, "act")?);
        out.push(compare(
            format!("silu_mul {rows}x{inter}"),
            &got,
            &gate,
            BF16,
        ));

        let n = rows * inter;
        let x = rng.vec(n, 3.0);
        let delta = round_bf16(&rng.vec(n, 1.0));
        let mut want = x.clone();
        residual_add_forward(&mut want, &delta);
        let mut x_dev = dev.upload(&x, "x")?;
        llama_ops::residual_add(
            dev,
            &mut x_dev.as_view_mut(),
            &dev.upload(&to_bf16(&delta), "delta")?.as_view(),
            n,
        )?;
        let got = dev.download(&x_dev, "x")?;
        out.push(compare(format!("residual_add {n}"), &got, &want, F32));
    }
    for (tokens, vocab, dim) in [(1, 5, 3), (33, 1000, 4096)] {
        let table = round_bf16(&rng.vec(vocab * dim, 1.0));
        let ids: Vec<u32> = (0..tokens).map(|_| rng.below(vocab) as u32).collect();
        let want: Vec<f32> = ids
            .iter()
            .flat_map(|&id| table[id as usize * dim..(id as usize + 1) * dim].to_vec())
            .collect();
        let mut out_dev = nan_f32(dev, tokens * dim)?;
        llama_ops::embedding(
            dev,
            &mut out_dev.as_view_mut(),
            &dev.upload(&ids, "ids")?.as_view(),
            &dev.upload(&to_bf16(&table), "table")?.as_view(),
            tokens,
            dim,
        )?;
        let got = dev.download(&out_dev, "embeddings")?;
        out.push(compare(
            format!("embedding {tokens}x{dim}"),
            &got,
            &want,
            F32,
        ));
    }
    Ok(out)
}

fn label_head_check(dev: &CudaDevice) -> Result<Vec<CheckResult>> {
    let mut rng = Rng::new(14);
    let mut out = Vec::new();
    for (tokens, vocab, dim, num_out) in [(1, 3, 7, 1), (9, 500, 128, 13), (40, 32000, 4096, 64)] {
        let x = rng.vec(tokens * dim, 2.0);
        let norm = rng.vec(dim, 1.0);
        let head = round_bf16(&rng.vec(vocab * dim, 1.0));
        let rows: Vec<u32> = (0..num_out).map(|_| rng.below(tokens) as u32).collect();
        let ids: Vec<u32> = (0..num_out).map(|_| rng.below(vocab) as u32).collect();
        // CPU twin (Llama::restricted_head): final norm of the row, then a dot with one LM-head row.
        let eps = 1e-5;
        let want: Vec<f32> = rows
            .iter()
            .zip(&ids)
            .map(|(&r, &id)| {
                let mut h = vec![0f32; dim];
                rmsnorm_forward(
                    &mut h,
                    &x[r as usize * dim..(r as usize + 1) * dim],
                    &norm,
                    eps,
                );
                let w = &head[id as usize * dim..(id as usize + 1) * dim];
                h.iter().zip(w).map(|(a, b)| a * b).sum()
            })
            .collect();
        let mut out_dev = nan_f32(dev, num_out)?;
        llama_ops::label_head(
            dev,
            &mut out_dev.as_view_mut(),
            &dev.upload(&x, "x")?.as_view(),
            &dev.upload(&rows, "rows")?.as_view(),
            &dev.upload(&ids, "ids")?.as_view(),
            &dev.upload(&norm, "norm")?.as_view(),
            &dev.upload(&to_bf16(&head), "lm_head")?.as_view(),
            num_out,
            eps,
        )?;
        let got = dev.download(&out_dev, "label logits")?;
        // f32 on both sides; only the summation order differs, over up to 4096 products.
        let tol = crate::selftest::Tolerance {
            atol: 1e-4,
            rtol: 1e-4,
            whole: 1e-5,
        };
        out.push(compare(
            format!("label head {num_out} of {vocab}x{dim}"),
            &got,
            &want,
            tol,
        ));
    }
    Ok(out)
}

fn argmax_check(dev: &CudaDevice) -> Result<Vec<CheckResult>> {
    let mut rng = Rng::new(15);
    let mut out = Vec::new();
    for (rows, n) in [(1, 1), (7, 300), (33, 32000)] {
        let mut logits = rng.vec(rows * n, 5.0);
        // Ties: the first maximum must win, as on the CPU.
        if n > 10 {
            for r in 0..rows {
                logits[r * n + 3] = 100.0;
                logits[r * n + n - 2] = 100.0;
            }
        }
        let want: Vec<u32> = logits
            .chunks(n)
            .map(crate::model::llama::generate::argmax)
            .collect();
        let mut out_dev = dev.upload(&vec![u32::MAX; rows], "argmax")?;
        llama_ops::argmax(
            dev,
            &mut out_dev.as_view_mut(),
            &dev.upload(&logits, "logits")?.as_view(),
            rows,
            n,
        )?;
        let got = dev.download(&out_dev, "argmax")?;
        let mismatch = got
            .iter()
            .zip(&want)
            .position(|(g, w)| g != w)
            .map(|r| format!("row {r}: {} vs {}", got[r], want[r]));
        out.push(CheckResult::exact(
            format!("argmax {rows}x{n}"),
            rows,
            mismatch,
        ));
    }
    Ok(out)
}
