//! Finite-difference gradient checks, in f64, of every layer of the training model and of the
//! whole model's `loss_backward` (central differences, h = 1e-6).

mod common;

use kpg::autodiff::ops::attention::{
    attention_backward, attention_forward, head0_forward, AttnLayout, Group,
};
use kpg::autodiff::ops::copy::{
    copy_loss_backward, copy_loss_forward, softmax_forward, CopyInputs, CopyRow,
};
use kpg::autodiff::ops::dropout::{dropout_backward, dropout_forward, Dropout};
use kpg::autodiff::ops::embedding::{embedding_backward, embedding_forward};
use kpg::autodiff::ops::ffn::{ffn_backward, ffn_forward, FfnGrads, FfnWeights};
use kpg::autodiff::ops::layernorm::{layernorm_backward, layernorm_forward};
use kpg::autodiff::ops::linear::{linear_backward, linear_forward};
use kpg::autodiff::{loss_backward, Params, TrainBatch, TrainWorkspace};
use kpg::model::one2set_config::One2SetConfig;

const H: f64 = 1e-6;
/// Central differences at h = 1e-6 in f64 carry about 1e-10 absolute error on O(1) losses.
const RTOL: f64 = 1e-6;
const ATOL: f64 = 1e-9;

use common::random_vec_f64 as rand;

/// Compares `analytic[i]` with the central difference of `f` in `x[i]` for every i in `which`
/// (all if None); panics with the worst entry.
fn check(
    what: &str,
    x: &mut [f64],
    analytic: &[f64],
    which: Option<&[usize]>,
    f: &mut dyn FnMut(&[f64]) -> f64,
) {
    let all: Vec<usize> = (0..x.len()).collect();
    let idx = which.unwrap_or(&all);
    let mut worst = (0usize, 0.0f64, 0.0, 0.0);
    for &i in idx {
        let x0 = x[i];
        x[i] = x0 + H;
        let up = f(x);
        x[i] = x0 - H;
        let down = f(x);
        x[i] = x0;
        let num = (up - down) / (2.0 * H);
        let excess = (analytic[i] - num).abs() - (ATOL + RTOL * num.abs().max(analytic[i].abs()));
        if excess > worst.1 || excess.is_nan() {
            worst = (
                i,
                if excess.is_nan() {
                    f64::INFINITY
                } else {
                    excess
                },
                analytic[i],
                num,
            );
        }
    }
    assert!(
        worst.1 <= 0.0,
        "{what}: entry {} analytic {:e} vs numeric {:e} (exceeds by {:e})",
        worst.0,
        worst.2,
        worst.3,
        worst.1
    );
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn linear_gradients() {
    let (rows, inp, out) = (5, 7, 3);
    let (mut x, mut w, mut b, c) = (
        rand(rows * inp, 1),
        rand(out * inp, 2),
        rand(out, 3),
        rand(rows * out, 4),
    );
    let (mut dx, mut dw, mut db) = (vec![0.0; rows * inp], vec![0.0; out * inp], vec![0.0; out]);
    linear_backward(
        Some(&mut dx),
        &mut dw,
        Some(&mut db),
        &c,
        &x,
        &w,
        rows,
        false,
    );
    let f = |x: &[f64], w: &[f64], b: &[f64]| {
        let mut y = vec![0.0; rows * out];
        linear_forward(&mut y, x, w, Some(b), rows);
        dot(&y, &c)
    };
    let (w0, b0) = (w.clone(), b.clone());
    check("linear dx", &mut x, &dx, None, &mut |x| f(x, &w0, &b0));
    let x0 = x.clone();
    check("linear dw", &mut w, &dw, None, &mut |w| f(&x0, w, &b0));
    let w0 = w.clone();
    check("linear db", &mut b, &db, None, &mut |b| f(&x0, &w0, b));
}

#[test]
fn layernorm_gradients() {
    let (rows, d) = (4, 6);
    let (mut x, mut g, mut b, c) = (rand(rows * d, 5), rand(d, 6), rand(d, 7), rand(rows * d, 8));
    let mut y = vec![0.0; rows * d];
    let (mut mean, mut rstd) = (vec![0.0; rows], vec![0.0; rows]);
    layernorm_forward(&mut y, &mut mean, &mut rstd, &x, &g, &b, 1e-5);
    let (mut dx, mut dg, mut db) = (vec![0.0; rows * d], vec![0.0; d], vec![0.0; d]);
    layernorm_backward(&mut dx, &mut dg, &mut db, &c, &x, &mean, &rstd, &g);
    let f = |x: &[f64], g: &[f64], b: &[f64]| {
        let mut y = vec![0.0; rows * d];
        let (mut m, mut r) = (vec![0.0; rows], vec![0.0; rows]);
        layernorm_forward(&mut y, &mut m, &mut r, x, g, b, 1e-5);
        dot(&y, &c)
    };
    let (g0, b0) = (g.clone(), b.clone());
    check("layernorm dx", &mut x, &dx, None, &mut |x| f(x, &g0, &b0));
    let x0 = x.clone();
    check("layernorm dg", &mut g, &dg, None, &mut |g| f(&x0, g, &b0));
    let g0 = g.clone();
    check("layernorm db", &mut b, &db, None, &mut |b| f(&x0, &g0, b));
}

/// One attention layout: checks dq, dk, dv with the context and the head-0 probabilities both
/// in the loss, with dropout on the probabilities.
fn attention_case(what: &str, groups: Vec<Group>, queries: usize, keys: usize, p_drop: f64) {
    let (heads, d) = (2, 6);
    let layout = AttnLayout::new(groups, heads);
    let mask = Dropout {
        p: p_drop,
        seed: 11,
    }
    .site(3);
    let (mut q, mut k, mut v) = (
        rand(queries * d, 21),
        rand(keys * d, 22),
        rand(keys * d, 23),
    );
    let (c, c0) = (rand(queries * d, 24), rand(layout.num_head0(), 25));
    let f = |q: &[f64], k: &[f64], v: &[f64]| {
        let mut ctx = vec![0.0; queries * d];
        let mut probs = vec![0.0; layout.num_probs()];
        attention_forward(&mut ctx, &mut probs, q, k, v, &layout, heads, d, mask);
        let mut h0 = vec![0.0; layout.num_head0()];
        head0_forward(&mut h0, &probs, &layout, heads, mask);
        dot(&ctx, &c) + dot(&h0, &c0)
    };
    let mut ctx = vec![0.0; queries * d];
    let mut probs = vec![0.0; layout.num_probs()];
    attention_forward(&mut ctx, &mut probs, &q, &k, &v, &layout, heads, d, mask);
    let (mut dq, mut dk, mut dv) = (
        vec![0.0; queries * d],
        vec![0.0; keys * d],
        vec![0.0; keys * d],
    );
    attention_backward(
        &mut dq,
        &mut dk,
        &mut dv,
        &c,
        &q,
        &k,
        &v,
        &probs,
        &layout,
        heads,
        d,
        mask,
        Some(&c0),
    );
    let (k0, v0) = (k.clone(), v.clone());
    check(&format!("{what} dq"), &mut q, &dq, None, &mut |q| {
        f(q, &k0, &v0)
    });
    let q0 = q.clone();
    check(&format!("{what} dk"), &mut k, &dk, None, &mut |k| {
        f(&q0, k, &v0)
    });
    let k0 = k.clone();
    check(&format!("{what} dv"), &mut v, &dv, None, &mut |v| {
        f(&q0, &k0, v)
    });
}

fn g(q_start: usize, q_len: usize, k_start: usize, k_len: usize, causal: bool) -> Group {
    Group {
        q_start,
        q_len,
        k_start,
        k_len,
        causal,
    }
}

#[test]
fn attention_gradients() {
    for p in [0.0, 0.3] {
        // Encoder self-attention: two documents of 4 and 1 tokens, then 3.
        attention_case(
            "encoder",
            vec![
                g(0, 4, 0, 4, false),
                g(4, 1, 4, 1, false),
                g(5, 3, 5, 3, false),
            ],
            8,
            8,
            p,
        );
        // Decoder self-attention: three slots of 3 steps, causal.
        attention_case(
            "decoder self",
            (0..3).map(|s| g(3 * s, 3, 3 * s, 3, true)).collect(),
            9,
            9,
            p,
        );
        // Cross-attention: 4 rows of document 0 over its 5 tokens, 2 rows of document 1 over 2.
        attention_case(
            "cross",
            vec![g(0, 4, 0, 5, false), g(4, 2, 5, 2, false)],
            6,
            7,
            p,
        );
    }
}

#[test]
fn ffn_gradients() {
    let (rows, d, f) = (4, 5, 7);
    let mask = Dropout { p: 0.25, seed: 5 }.site(9);
    let mut h = rand(rows * d, 31);
    let mut ws: Vec<Vec<f64>> = vec![rand(f * d, 32), rand(f, 33), rand(d * f, 34), rand(d, 35)];
    let c = rand(rows * d, 36);
    let eval = |h: &[f64], ws: &[Vec<f64>]| {
        let w = FfnWeights {
            w1: &ws[0],
            b1: &ws[1],
            w2: &ws[2],
            b2: &ws[3],
        };
        let (mut out, mut act) = (vec![0.0; rows * d], vec![0.0; rows * f]);
        ffn_forward(&mut out, &mut act, h, &w, rows, mask);
        (dot(&out, &c), act)
    };
    let (_, act) = eval(&h, &ws);
    let mut gs: Vec<Vec<f64>> = ws.iter().map(|w| vec![0.0; w.len()]).collect();
    let mut dh = vec![0.0; rows * d];
    let mut dact = vec![0.0; rows * f];
    {
        let [g1, gb1, g2, gb2] = gs.get_disjoint_mut([0, 1, 2, 3]).unwrap();
        let grads = FfnGrads {
            w1: g1,
            b1: gb1,
            w2: g2,
            b2: gb2,
        };
        let w = FfnWeights {
            w1: &ws[0],
            b1: &ws[1],
            w2: &ws[2],
            b2: &ws[3],
        };
        ffn_backward(&mut dh, &mut dact, grads, &c, &h, &act, &w, rows, mask);
    }
    let w0 = ws.clone();
    check("ffn dh", &mut h, &dh, None, &mut |h| eval(h, &w0).0);
    for t in 0..4 {
        let mut x = ws[t].clone();
        check(&format!("ffn weight {t}"), &mut x, &gs[t], None, &mut |x| {
            ws[t].copy_from_slice(x);
            eval(&h, &ws).0
        });
        ws[t] = x;
    }
}

#[test]
fn embedding_gradients() {
    let (vocab, d) = (6, 3);
    let ids = [3u32, 1, 3, 5, 0];
    let mut table = rand(vocab * d, 41);
    let c = rand(ids.len() * d, 42);
    let mut dt = vec![0.0; vocab * d];
    embedding_backward(&mut dt, &ids, &c, 2.0, None);
    check("embedding", &mut table, &dt, None, &mut |t| {
        let mut out = vec![0.0; ids.len() * d];
        embedding_forward(&mut out, &ids, t, 2.0);
        dot(&out, &c)
    });
    // The padding row is never updated.
    let mut dt = vec![0.0; vocab * d];
    embedding_backward(&mut dt, &ids, &c, 2.0, Some(0));
    assert!(dt[..d].iter().all(|&v| v == 0.0));
}

#[test]
fn dropout_gradients() {
    let mask = Dropout { p: 0.4, seed: 7 }.site(1);
    let mut x = rand(20, 51);
    let c = rand(20, 52);
    let mut dx = c.clone();
    dropout_backward(&mut dx, mask, 4);
    check("dropout", &mut x, &dx, None, &mut |x| {
        let mut y = x.to_vec();
        dropout_forward(&mut y, mask, 4);
        dot(&y, &c)
    });
    let mut y = vec![1.0f64; 10_000];
    dropout_forward(&mut y, mask, 0);
    let dropped = y.iter().filter(|&&v| v == 0.0).count();
    assert!(
        (3700..4300).contains(&dropped),
        "{dropped} of 10000 dropped at p = 0.4"
    );
    assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.6).abs() < 1e-12));
}

#[test]
fn copy_loss_gradients() {
    let (rows, vocab) = (4, 5);
    // Row r reads its document's source: rows 0-1 document 0 (3 tokens), rows 2-3 document 1 (2).
    let src_ext = [2u32, 5, 2, 6, 1];
    let copy_rows = [
        CopyRow {
            head0_at: 0,
            src_at: 0,
            len: 3,
        },
        CopyRow {
            head0_at: 3,
            src_at: 0,
            len: 3,
        },
        CopyRow {
            head0_at: 6,
            src_at: 3,
            len: 2,
        },
        CopyRow {
            head0_at: 8,
            src_at: 3,
            len: 2,
        },
    ];
    let targets = [2u32, 5, 6, 3];
    let weights = [1.0, 0.2, 0.7, 0.0];
    let norm = 3.0;
    let mut logits = rand(rows * vocab, 61);
    let mut z = rand(rows, 62);
    let mut head0: Vec<f64> = rand(10, 63).iter().map(|v| 0.3 + 0.2 * v).collect();
    let loss = |logits: &[f64], z: &[f64], head0: &[f64]| {
        let mut probs = logits.to_vec();
        softmax_forward(&mut probs, vocab);
        let p_gen: Vec<f64> = z.iter().map(|z| 1.0 / (1.0 + (-z).exp())).collect();
        let x = CopyInputs {
            p_gen: &p_gen,
            head0,
            rows: &copy_rows,
            src_ext: &src_ext,
            targets: &targets,
            weights: &weights,
            vocab,
        };
        let mut pt = vec![0.0; rows];
        let l = copy_loss_forward(&probs, &x, norm, &mut pt);
        (l, probs, p_gen, pt)
    };
    let (_, mut probs, p_gen, pt) = loss(&logits, &z, &head0);
    let (mut dz, mut dh0) = (vec![0.0; rows], vec![0.0; 10]);
    let x = CopyInputs {
        p_gen: &p_gen,
        head0: &head0,
        rows: &copy_rows,
        src_ext: &src_ext,
        targets: &targets,
        weights: &weights,
        vocab,
    };
    copy_loss_backward(&mut probs, &mut dz, &mut dh0, &x, &pt, norm);
    let (z0, h0) = (z.clone(), head0.clone());
    check("copy dlogits", &mut logits, &probs, None, &mut |l| {
        loss(l, &z0, &h0).0
    });
    let l0 = logits.clone();
    check("copy dz_gen", &mut z, &dz, None, &mut |z| {
        loss(&l0, z, &h0).0
    });
    let z0 = z.clone();
    check("copy dhead0", &mut head0, &dh0, None, &mut |h| {
        loss(&l0, &z0, h).0
    });
}

/// A tiny generator and a batch of two documents (5 and 3 tokens) with OOV words.
pub fn tiny() -> (One2SetConfig, TrainBatch, Vec<u32>, Vec<f64>) {
    let c = One2SetConfig {
        vocab_size: 20,
        d_model: 8,
        num_heads: 2,
        ffn_dim: 16,
        encoder_layers: 1,
        decoder_layers: 1,
        num_control_codes: 4,
        num_present_codes: 2,
        max_keyphrase_len: 6,
        max_source_len: 16,
        layer_norm_eps: 1e-5,
        dtype: None,
    };
    let steps = 3;
    // Document 0: words 9 12 <oov a> 9 <oov b>; document 1: 15 <oov a> 8.
    let batch = TrainBatch {
        src: vec![9, 12, 1, 9, 1, 15, 1, 8],
        doc_lens: vec![5, 3],
        src_ext: vec![9, 12, 20, 9, 21, 15, 20, 8],
        num_oov: vec![2, 1],
        dec_in: vec![
            2, 9, 1, /**/ 2, 12, 13, /**/ 2, 6, 0, /**/ 2, 17, 3, //
            2, 15, 1, /**/ 2, 8, 3, /**/ 2, 6, 0, /**/ 2, 6, 0,
        ],
        steps,
    };
    let targets = vec![
        9, 20, 3, /**/ 12, 13, 3, /**/ 6, 0, 0, /**/ 17, 3, 0, //
        15, 20, 3, /**/ 8, 3, 0, /**/ 6, 0, 0, /**/ 6, 0, 0,
    ];
    let weights = vec![
        1.0, 1.0, 1.0, /**/ 1.0, 1.0, 1.0, /**/ 0.2, 0.2, 0.0, /**/ 1.0, 1.0,
        0.0, //
        1.0, 1.0, 1.0, /**/ 1.0, 1.0, 0.0, /**/ 0.1, 0.1, 0.0, /**/ 0.1, 0.1, 0.0,
    ];
    (c, batch, targets, weights)
}

fn model_check(p_drop: f64) {
    let (c, batch, targets, weights) = tiny();
    let mut params = Params::<f64>::init(&c, 3);
    // Norm weights away from 1 and biases away from 0, so that their gradients are generic.
    for t in params
        .tensors
        .iter_mut()
        .filter(|t| t.name.contains("layer_norm"))
    {
        let r = rand(t.data.len(), t.data.len() as u64 + 7);
        t.data.iter_mut().zip(r).for_each(|(v, r)| *v += 0.3 * r);
    }
    let drop = Dropout {
        p: p_drop,
        seed: 99,
    };
    let mut ws = TrainWorkspace::new();
    let mut grads = params.zeros_like();
    let norm = 11.0;
    loss_backward(
        &params, &batch, &targets, &weights, norm, drop, &mut grads, &mut ws,
    )
    .unwrap();
    for ti in 0..params.tensors.len() {
        let n = params.tensors[ti].data.len();
        // A sample: a few random entries and the largest gradient.
        let gt = &grads.tensors[ti].data;
        let mut which: Vec<usize> = rand(4, ti as u64 + 100)
            .iter()
            .map(|r| ((r + 1.0) / 2.0 * n as f64) as usize % n)
            .collect();
        which.push(
            (0..n)
                .max_by(|&a, &b| gt[a].abs().total_cmp(&gt[b].abs()))
                .unwrap(),
        );
        let name = params.tensors[ti].name.clone();
        let mut x = params.tensors[ti].data.clone();
        let analytic = gt.clone();
        let mut ws2 = TrainWorkspace::new();
        check(
            &format!("model {name} (dropout {p_drop})"),
            &mut x,
            &analytic,
            Some(&which),
            &mut |x| {
                params.tensors[ti].data.copy_from_slice(x);
                let mut scratch = params.zeros_like();
                loss_backward(
                    &params,
                    &batch,
                    &targets,
                    &weights,
                    norm,
                    drop,
                    &mut scratch,
                    &mut ws2,
                )
                .unwrap()
            },
        );
        params.tensors[ti].data.copy_from_slice(&x);
    }
}

#[test]
fn model_gradients_without_dropout() {
    model_check(0.0);
}

#[test]
fn model_gradients_with_dropout() {
    model_check(0.1);
}

#[test]
fn gradients_accumulate() {
    let (c, batch, targets, weights) = tiny();
    let params = Params::<f64>::init(&c, 5);
    let mut ws = TrainWorkspace::new();
    let mut once = params.zeros_like();
    loss_backward(
        &params,
        &batch,
        &targets,
        &weights,
        1.0,
        Dropout::OFF,
        &mut once,
        &mut ws,
    )
    .unwrap();
    let mut twice = params.zeros_like();
    for _ in 0..2 {
        loss_backward(
            &params,
            &batch,
            &targets,
            &weights,
            1.0,
            Dropout::OFF,
            &mut twice,
            &mut ws,
        )
        .unwrap();
    }
    for (a, b) in once.tensors.iter().zip(&twice.tensors) {
        for (x, y) in a.data.iter().zip(&b.data) {
            assert!(
                (2.0 * x - y).abs() <= 1e-12 * y.abs().max(1.0),
                "{}",
                a.name
            );
        }
    }
}
