//! The LLaMA forward pass of one teacher-forced sequence with every activation kept, the weighted
//! cross-entropy at chosen rows, and the backward pass that accumulates the LoRA gradients. The
//! base weights are frozen: the backward pass only carries the gradient through them.
//!
//! One sequence at a time, so that memory is bounded by the longest example (activations of
//! SmolLM2-135M at 400 tokens: about 600 MB); the matrix products use both cores.

use super::base::BaseModel;
use super::lora_params::{LoraModule, LoraParams};
use super::ops::{
    attention_backward, attention_forward, rmsnorm_backward, rmsnorm_forward, silu_mul_backward,
    silu_mul_forward, weighted_cross_entropy, AttentionShape, RopeAngles,
};
use crate::autodiff::ops::matmul::matmul;
use crate::autodiff::Real;
use crate::error::{KpgError, Result};
use crate::model::config::LlamaConfig;

/// Which tokens' next-token logits are scored, and against what.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredRows {
    /// Rows (token positions) whose logits predict a label.
    pub rows: Vec<usize>,
    /// The token each row should predict.
    pub targets: Vec<u32>,
}

/// What the forward pass keeps of one layer for the backward pass.
struct LayerTape<T> {
    x: Vec<T>,     // [tokens, hidden] the layer's input
    inv1: Vec<T>,  // [tokens]
    h1: Vec<T>,    // [tokens, hidden]
    q: Vec<T>,     // [tokens, q_dim] after RoPE
    k: Vec<T>,     // [tokens, kv_dim] after RoPE
    v: Vec<T>,     // [tokens, kv_dim]
    probs: Vec<T>, // [heads, tokens, tokens]
    attn: Vec<T>,  // [tokens, q_dim]
    x_mid: Vec<T>, // [tokens, hidden] after the attention residual
    inv2: Vec<T>,  // [tokens]
    h2: Vec<T>,    // [tokens, hidden]
    gate: Vec<T>,  // [tokens, intermediate] before SiLU
    up: Vec<T>,    // [tokens, intermediate]
    act: Vec<T>,   // [tokens, intermediate]
    /// Per projection, `x·Aᵀ` `[tokens, rank]` (empty where the projection has no adapter).
    lora_t: Vec<Vec<T>>,
}

/// A forward pass's record.
pub struct Tape<T> {
    tokens: usize,
    layers: Vec<LayerTape<T>>,
    rope: RopeAngles<T>,
    x_rows: Vec<T>,   // [rows, hidden] final residual at the scored rows
    inv_rows: Vec<T>, // [rows]
    /// `[rows, vocab]` logits at the scored rows.
    pub logits: Vec<T>,
}

fn zeros<T: Real>(n: usize) -> Vec<T> {
    vec![T::zero(); n]
}

/// `y = x·Wᵀ (+ scale·(x·Aᵀ)·Bᵀ)`; returns `x·Aᵀ` (empty without an adapter).
fn lora_linear_forward<T: Real>(
    y: &mut [T], // [rows, out]
    x: &[T],     // [rows, in]
    w: &[T],     // [out, in]
    module: Option<&LoraModule<T>>,
    scale: T,
    rows: usize,
) -> Vec<T> {
    let out = y.len() / rows;
    let inp = x.len() / rows;
    matmul(y, x, w, rows, out, inp, false, true, false);
    let Some(m) = module else {
        return Vec::new();
    };
    let r = m.a.len() / inp;
    let mut t = zeros(rows * r);
    matmul(&mut t, x, &m.a, rows, r, inp, false, true, false);
    let ts: Vec<T> = t.iter().map(|&v| v * scale).collect();
    matmul(y, &ts, &m.b, rows, out, r, false, true, true);
    t
}

/// Accumulates the LoRA gradients of [`lora_linear_forward`] and, when `dx` is given, adds
/// `dy·W + scale·(dy·B)·A` to it.
#[allow(clippy::too_many_arguments)]
fn lora_linear_backward<T: Real>(
    dx: Option<&mut [T]>, // [rows, in] accumulated
    dy: &[T],             // [rows, out]
    x: &[T],              // [rows, in]
    w: &[T],              // [out, in]
    module: Option<(&LoraModule<T>, &mut LoraModule<T>)>,
    t: &[T], // [rows, rank]
    scale: T,
    rows: usize,
) {
    let out = dy.len() / rows;
    let inp = x.len() / rows;
    let mut dx = dx;
    if let Some(dx) = dx.as_deref_mut() {
        matmul(dx, dy, w, rows, inp, out, false, false, true);
    }
    let Some((m, g)) = module else {
        return;
    };
    let r = m.a.len() / inp;
    // dB += scale·dyᵀ·t; u = scale·dy·B; dA += uᵀ·x; dx += u·A.
    let ts: Vec<T> = t.iter().map(|&v| v * scale).collect();
    matmul(&mut g.b, dy, &ts, out, r, rows, true, false, true);
    let mut u = zeros(rows * r);
    matmul(&mut u, dy, &m.b, rows, r, out, false, false, false);
    u.iter_mut().for_each(|v| *v *= scale);
    matmul(&mut g.a, &u, x, r, inp, rows, true, false, true);
    if let Some(dx) = dx {
        matmul(dx, &u, &m.a, rows, inp, r, false, false, true);
    }
}

/// The causal self-attention of a sequence of `tokens` under `config`.
fn attention_shape(config: &LlamaConfig, tokens: usize) -> AttentionShape {
    AttentionShape {
        tokens,
        heads: config.num_attention_heads,
        kv_heads: config.num_key_value_heads,
        head_dim: config.head_dim,
    }
}

fn check_tokens<T: Real>(base: &BaseModel<T>, tokens: &[u32], scored: &ScoredRows) -> Result<()> {
    let c = &base.config;
    if tokens.is_empty() {
        return Err(KpgError::InvalidArgument(
            "an empty training sequence".into(),
        ));
    }
    if tokens.len() > c.max_position_embeddings {
        return Err(KpgError::ContextTooLong {
            needed: tokens.len(),
            limit: c.max_position_embeddings,
        });
    }
    let bad = tokens
        .iter()
        .chain(&scored.targets)
        .find(|&&id| id as usize >= c.vocab_size);
    if let Some(&id) = bad {
        return Err(KpgError::TokenOutOfRange {
            id,
            vocab_size: c.vocab_size,
        });
    }
    if scored.rows.len() != scored.targets.len() || scored.rows.iter().any(|&r| r >= tokens.len()) {
        return Err(KpgError::InvalidArgument(format!(
            "{} scored rows and {} targets for a sequence of {} tokens",
            scored.rows.len(),
            scored.targets.len(),
            tokens.len()
        )));
    }
    Ok(())
}

/// The forward pass of `tokens` (positions from 0) with the adapter, keeping what the backward
/// pass needs; the logits are computed at `scored.rows` only.
pub fn forward<T: Real>(
    base: &BaseModel<T>,
    lora: &LoraParams<T>,
    tokens: &[u32],
    scored: &ScoredRows,
) -> Result<Tape<T>> {
    check_tokens(base, tokens, scored)?;
    let c = &base.config;
    let n = tokens.len();
    let (hidden, inter) = (c.hidden_size, c.intermediate_size);
    let (q_dim, kv_dim) = (c.q_dim(), c.kv_dim());
    let eps = c.rms_norm_eps as f64;
    let scale = T::of(lora.shape.scale());
    let shape = attention_shape(c, n);
    let rope = RopeAngles::new(&base.inv_freq, n);

    let mut x = zeros::<T>(n * hidden);
    for (row, &id) in x.chunks_mut(hidden).zip(tokens) {
        row.copy_from_slice(&base.embed[id as usize * hidden..(id as usize + 1) * hidden]);
    }
    let mut layers = Vec::with_capacity(base.layers.len());
    for (l, layer) in base.layers.iter().enumerate() {
        let w = &layer.proj;
        let module = |p: usize| lora.module(l, p);
        let mut lora_t = vec![Vec::new(); 7];
        let (mut h1, mut inv1) = (zeros(n * hidden), zeros(n));
        rmsnorm_forward(&mut h1, &mut inv1, &x, &layer.input_norm, eps);
        let (mut q, mut k, mut v) = (zeros(n * q_dim), zeros(n * kv_dim), zeros(n * kv_dim));
        lora_t[0] = lora_linear_forward(&mut q, &h1, &w[0], module(0), scale, n);
        lora_t[1] = lora_linear_forward(&mut k, &h1, &w[1], module(1), scale, n);
        lora_t[2] = lora_linear_forward(&mut v, &h1, &w[2], module(2), scale, n);
        rope.rotate(&mut q, false);
        rope.rotate(&mut k, false);
        let (mut attn, mut probs) = (zeros(n * q_dim), zeros(shape.heads * n * n));
        attention_forward(&mut attn, &mut probs, &q, &k, &v, shape);
        let mut proj = zeros(n * hidden);
        lora_t[3] = lora_linear_forward(&mut proj, &attn, &w[3], module(3), scale, n);
        let mut x_mid = x.clone();
        x_mid.iter_mut().zip(&proj).for_each(|(a, &b)| *a += b);

        let (mut h2, mut inv2) = (zeros(n * hidden), zeros(n));
        rmsnorm_forward(&mut h2, &mut inv2, &x_mid, &layer.post_norm, eps);
        let (mut gate, mut up) = (zeros(n * inter), zeros(n * inter));
        lora_t[4] = lora_linear_forward(&mut gate, &h2, &w[4], module(4), scale, n);
        lora_t[5] = lora_linear_forward(&mut up, &h2, &w[5], module(5), scale, n);
        let mut act = zeros(n * inter);
        silu_mul_forward(&mut act, &gate, &up);
        lora_t[6] = lora_linear_forward(&mut proj, &act, &w[6], module(6), scale, n);
        let mut x_next = x_mid.clone();
        x_next.iter_mut().zip(&proj).for_each(|(a, &b)| *a += b);

        layers.push(LayerTape {
            x: std::mem::replace(&mut x, x_next),
            inv1,
            h1,
            q,
            k,
            v,
            probs,
            attn,
            x_mid,
            inv2,
            h2,
            gate,
            up,
            act,
            lora_t,
        });
    }

    let rows = scored.rows.len();
    let mut x_rows = zeros(rows * hidden);
    for (o, &r) in x_rows.chunks_mut(hidden).zip(&scored.rows) {
        o.copy_from_slice(&x[r * hidden..(r + 1) * hidden]);
    }
    let (mut h_rows, mut inv_rows) = (zeros(rows * hidden), zeros(rows));
    rmsnorm_forward(&mut h_rows, &mut inv_rows, &x_rows, &base.final_norm, eps);
    let mut logits = zeros(rows * c.vocab_size);
    matmul(
        &mut logits,
        &h_rows,
        base.lm_head(),
        rows,
        c.vocab_size,
        hidden,
        false,
        true,
        false,
    );
    Ok(Tape {
        tokens: n,
        layers,
        rope,
        x_rows,
        inv_rows,
        logits,
    })
}

/// `Σ weights[i]·CE(logits at scored.rows[i], scored.targets[i])` of one sequence, and its LoRA
/// gradients added into `grads`.
pub fn loss_backward<T: Real>(
    base: &BaseModel<T>,
    lora: &LoraParams<T>,
    tokens: &[u32],
    scored: &ScoredRows,
    weights: &[T], // [rows]
    grads: &mut LoraParams<T>,
) -> Result<T> {
    if weights.len() != scored.rows.len() {
        return Err(KpgError::InvalidArgument(format!(
            "{} weights for {} scored rows",
            weights.len(),
            scored.rows.len()
        )));
    }
    let mut tape = forward(base, lora, tokens, scored)?;
    let loss = weighted_cross_entropy(&mut tape.logits, &scored.targets, weights);
    backward(base, lora, &tape, scored, grads);
    Ok(loss)
}

/// The backward pass from the logits' gradient (held in `tape.logits`).
fn backward<T: Real>(
    base: &BaseModel<T>,
    lora: &LoraParams<T>,
    tape: &Tape<T>,
    scored: &ScoredRows,
    grads: &mut LoraParams<T>,
) {
    let c = &base.config;
    let n = tape.tokens;
    let (hidden, inter) = (c.hidden_size, c.intermediate_size);
    let (q_dim, kv_dim) = (c.q_dim(), c.kv_dim());
    let scale = T::of(lora.shape.scale());
    let shape = attention_shape(c, n);
    let rows = scored.rows.len();

    // The head: d h_rows = dlogits·lm_head, through the final norm, into the residual rows.
    let mut dh_rows = zeros(rows * hidden);
    matmul(
        &mut dh_rows,
        &tape.logits,
        base.lm_head(),
        rows,
        hidden,
        c.vocab_size,
        false,
        false,
        false,
    );
    let mut dx_rows = zeros(rows * hidden);
    rmsnorm_backward(
        &mut dx_rows,
        &dh_rows,
        &tape.x_rows,
        &tape.inv_rows,
        &base.final_norm,
    );
    let mut dx = zeros::<T>(n * hidden);
    for (d, &r) in dx_rows.chunks(hidden).zip(&scored.rows) {
        dx[r * hidden..(r + 1) * hidden]
            .iter_mut()
            .zip(d)
            .for_each(|(o, &v)| *o += v);
    }

    // Below the lowest adapted layer no gradient is needed.
    let lowest = lora
        .modules
        .iter()
        .map(|m| m.layer)
        .min()
        .unwrap_or(usize::MAX);
    for (l, (layer, t)) in base.layers.iter().zip(&tape.layers).enumerate().rev() {
        if l < lowest {
            break;
        }
        let w = &layer.proj;
        let mut step = |dx: Option<&mut [T]>, dy: &[T], x: &[T], p: usize| {
            let module = match (lora.module(l, p), grads.module_mut(l, p)) {
                (Some(m), Some(g)) => Some((m, g)),
                _ => None,
            };
            lora_linear_backward(dx, dy, x, &w[p], module, &t.lora_t[p], scale, n);
        };

        // MLP: x_next = x_mid + down(silu(gate)·up) of rmsnorm(x_mid).
        let mut d_act = zeros(n * inter);
        step(Some(&mut d_act), &dx, &t.act, 6);
        let (mut d_gate, mut d_up) = (zeros(n * inter), zeros(n * inter));
        silu_mul_backward(&mut d_gate, &mut d_up, &d_act, &t.gate, &t.up);
        let mut dh2 = zeros(n * hidden);
        step(Some(&mut dh2), &d_gate, &t.h2, 4);
        step(Some(&mut dh2), &d_up, &t.h2, 5);
        rmsnorm_backward(&mut dx, &dh2, &t.x_mid, &t.inv2, &layer.post_norm);

        // Attention: x_mid = x + o(attn(rope(q), rope(k), v)) of rmsnorm(x).
        let mut d_attn = zeros(n * q_dim);
        step(Some(&mut d_attn), &dx, &t.attn, 3);
        let (mut dq, mut dk, mut dv) = (zeros(n * q_dim), zeros(n * kv_dim), zeros(n * kv_dim));
        attention_backward(
            &mut dq, &mut dk, &mut dv, &d_attn, &t.probs, &t.q, &t.k, &t.v, shape,
        );
        tape.rope.rotate(&mut dq, true);
        tape.rope.rotate(&mut dk, true);
        let need_dx = l > lowest;
        let mut dh1 = zeros(if need_dx { n * hidden } else { 0 });
        for (p, dy) in [(0, &dq), (1, &dk), (2, &dv)] {
            step(need_dx.then_some(dh1.as_mut_slice()), dy, &t.h1, p);
        }
        if need_dx {
            rmsnorm_backward(&mut dx, &dh1, &t.x, &t.inv1, &layer.input_norm);
        }
    }
}
