//! The pre-LayerNorm sublayers of the Transformer, `x += dropout(f(LN(x)))`, with what each keeps
//! for its backward pass, and the indices of the parameters they use.

use super::ops::attention::{attention_backward, attention_forward, AttnLayout};
use super::ops::dropout::{dropout_backward, dropout_forward, Dropout};
use super::ops::ffn::{ffn_backward, ffn_forward, FfnGrads, FfnWeights};
use super::ops::layernorm::{layernorm_backward, layernorm_forward};
use super::ops::linear::{linear_backward, linear_forward};
use super::params::Params;
use super::Real;

/// Sets `v` to `n` elements (keeping the allocation) and returns them.
pub(crate) fn buf<T: Real>(v: &mut Vec<T>, n: usize) -> &mut [T] {
    v.resize(n, T::zero());
    &mut v[..n]
}

/// Parameter indices of an `nn.Linear` / `nn.LayerNorm` (weight, bias).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pair {
    pub w: usize,
    pub b: usize,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct AttnIx {
    pub norm: Pair,
    pub q: Pair,
    pub k: Pair,
    pub v: Pair,
    pub out: Pair,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct FfnIx {
    pub norm: Pair,
    pub fc1: Pair,
    pub fc2: Pair,
}

impl Pair {
    pub fn find<T: Real>(p: &Params<T>, name: &str) -> Pair {
        let at = |s: &str| {
            p.index(&format!("{name}.{s}"))
                .unwrap_or_else(|| panic!("{name}.{s} in tensor_specs"))
        };
        Pair {
            w: at("weight"),
            b: at("bias"),
        }
    }
}

impl AttnIx {
    pub fn find<T: Real>(p: &Params<T>, norm: &str, attn: &str) -> AttnIx {
        AttnIx {
            norm: Pair::find(p, norm),
            q: Pair::find(p, &format!("{attn}.q_proj")),
            k: Pair::find(p, &format!("{attn}.k_proj")),
            v: Pair::find(p, &format!("{attn}.v_proj")),
            out: Pair::find(p, &format!("{attn}.out_proj")),
        }
    }
}

impl FfnIx {
    pub fn find<T: Real>(p: &Params<T>, norm: &str, layer: &str) -> FfnIx {
        FfnIx {
            norm: Pair::find(p, norm),
            fc1: Pair::find(p, &format!("{layer}.ffn.0")),
            fc2: Pair::find(p, &format!("{layer}.ffn.3")),
        }
    }
}

/// (weight, bias) data of a pair.
pub(crate) fn wb<T: Real>(p: &Params<T>, i: Pair) -> (&[T], &[T]) {
    (&p.tensors[i.w].data, &p.tensors[i.b].data)
}

/// (weight, bias) gradients of a pair.
pub(crate) fn wb_mut<T: Real>(g: &mut Params<T>, i: Pair) -> (&mut [T], &mut [T]) {
    let [w, b] = g
        .tensors
        .get_disjoint_mut([i.w, i.b])
        .expect("distinct tensors");
    (&mut w.data, &mut b.data)
}

/// Dropout sites of one sublayer: `base + PROBS` on attention probabilities, `base + OUT` on the
/// sublayer output, `base + ACT` after the FFN's ReLU.
pub(crate) const PROBS: u64 = 1;
pub(crate) const OUT: u64 = 2;
pub(crate) const ACT: u64 = 3;

/// Scratch of the backward pass, shared by all sublayers.
#[derive(Default)]
pub(crate) struct Scratch<T> {
    pub a: Vec<T>,   // [rows, d]
    pub b: Vec<T>,   // [rows, d]
    pub h: Vec<T>,   // [rows, d]
    pub dq: Vec<T>,  // [rows, d]
    pub dk: Vec<T>,  // [keys, d]
    pub dv: Vec<T>,  // [keys, d]
    pub act: Vec<T>, // [rows, ffn]
}

/// What a LayerNorm keeps: its input and each row's statistics.
#[derive(Default)]
pub(crate) struct NormCache<T> {
    pub x: Vec<T>,    // [rows, d]
    pub mean: Vec<T>, // [rows]
    pub rstd: Vec<T>, // [rows]
}

impl<T: Real> NormCache<T> {
    /// `y = LN(x)`, keeping `x` and the statistics.
    pub fn forward(&mut self, y: &mut Vec<T>, x: &[T], p: &Params<T>, i: Pair, d: usize, eps: f64) {
        let rows = x.len() / d;
        buf(&mut self.x, x.len()).copy_from_slice(x);
        let (w, b) = wb(p, i);
        layernorm_forward(
            buf(y, x.len()),
            buf(&mut self.mean, rows),
            buf(&mut self.rstd, rows),
            x,
            w,
            b,
            eps,
        );
    }

    /// `dx += LN'(dy)`.
    pub fn backward(&self, dx: &mut [T], dy: &[T], p: &Params<T>, g: &mut Params<T>, i: Pair) {
        let (dw, db) = wb_mut(g, i);
        layernorm_backward(
            dx,
            dw,
            db,
            dy,
            &self.x,
            &self.mean,
            &self.rstd,
            &p.tensors[i.w].data,
        );
    }
}

/// What an attention sublayer keeps.
#[derive(Default)]
pub(crate) struct AttnCache<T> {
    pub norm: NormCache<T>,
    pub h: Vec<T>,     // [rows, d] LN output
    pub q: Vec<T>,     // [rows, d]
    pub k: Vec<T>,     // [keys, d]
    pub v: Vec<T>,     // [keys, d]
    pub probs: Vec<T>, // [layout.num_probs()]
    pub ctx: Vec<T>,   // [rows, d] heads concatenated, before out_proj
}

/// `x += dropout(out_proj(attention(q_proj(LN(x)), k, v)))`, keys and values projected from
/// `kv` (the encoder output, cross-attention) or from `LN(x)` (self-attention).
#[allow(clippy::too_many_arguments)]
pub(crate) fn attn_sub_forward<T: Real>(
    p: &Params<T>,
    ix: &AttnIx,
    x: &mut [T], // [rows, d]
    c: &mut AttnCache<T>,
    kv: Option<&[T]>, // [keys, d]
    layout: &AttnLayout,
    drop: &Dropout,
    site: u64,
    tmp: &mut Vec<T>,
) {
    let cfg = &p.config;
    let (d, eps) = (cfg.d_model, cfg.layer_norm_eps);
    let rows = x.len() / d;
    c.norm.forward(&mut c.h, x, p, ix.norm, d, eps);
    let src = kv.unwrap_or(&c.h);
    let keys = src.len() / d;
    let (w, b) = wb(p, ix.q);
    linear_forward(buf(&mut c.q, rows * d), &c.h, w, Some(b), rows);
    let (w, b) = wb(p, ix.k);
    linear_forward(buf(&mut c.k, keys * d), src, w, Some(b), keys);
    let (w, b) = wb(p, ix.v);
    linear_forward(buf(&mut c.v, keys * d), src, w, Some(b), keys);
    attention_forward(
        buf(&mut c.ctx, rows * d),
        buf(&mut c.probs, layout.num_probs()),
        &c.q,
        &c.k,
        &c.v,
        layout,
        cfg.num_heads,
        d,
        drop.site(site + PROBS),
    );
    let (w, b) = wb(p, ix.out);
    let o = buf(tmp, rows * d);
    linear_forward(o, &c.ctx, w, Some(b), rows);
    dropout_forward(o, drop.site(site + OUT), 0);
    x.iter_mut().zip(o.iter()).for_each(|(v, &y)| *v += y);
}

/// Backward of [`attn_sub_forward`]: `gx` is the residual stream's gradient, updated in place;
/// for cross-attention, `kv` gives the encoder output and its gradient (accumulated);
/// `dhead0` is the copy mechanism's gradient of the dropped head-0 probabilities.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attn_sub_backward<T: Real>(
    p: &Params<T>,
    g: &mut Params<T>,
    ix: &AttnIx,
    gx: &mut [T], // [rows, d]
    c: &AttnCache<T>,
    kv: Option<(&[T], &mut [T])>, // [keys, d] each
    layout: &AttnLayout,
    drop: &Dropout,
    site: u64,
    dhead0: Option<&[T]>,
    s: &mut Scratch<T>,
) {
    let cfg = &p.config;
    let d = cfg.d_model;
    let rows = gx.len() / d;
    let keys = c.k.len() / d;
    let dout = buf(&mut s.a, rows * d);
    dout.copy_from_slice(gx);
    dropout_backward(dout, drop.site(site + OUT), 0);
    let (dw, db) = wb_mut(g, ix.out);
    let dctx = buf(&mut s.b, rows * d);
    linear_backward(
        Some(&mut *dctx),
        dw,
        Some(db),
        dout,
        &c.ctx,
        &p.tensors[ix.out.w].data,
        rows,
        false,
    );
    attention_backward(
        buf(&mut s.dq, rows * d),
        buf(&mut s.dk, keys * d),
        buf(&mut s.dv, keys * d),
        dctx,
        &c.q,
        &c.k,
        &c.v,
        &c.probs,
        layout,
        cfg.num_heads,
        d,
        drop.site(site + PROBS),
        dhead0,
    );
    let dh = buf(&mut s.h, rows * d);
    let (dw, db) = wb_mut(g, ix.q);
    linear_backward(
        Some(&mut *dh),
        dw,
        Some(db),
        &s.dq,
        &c.h,
        &p.tensors[ix.q.w].data,
        rows,
        false,
    );
    match kv {
        Some((src, dsrc)) => {
            for (i, dy) in [(ix.k, &s.dk), (ix.v, &s.dv)] {
                let (dw, db) = wb_mut(g, i);
                linear_backward(
                    Some(&mut *dsrc),
                    dw,
                    Some(db),
                    dy,
                    src,
                    &p.tensors[i.w].data,
                    keys,
                    true,
                );
            }
        }
        None => {
            for (i, dy) in [(ix.k, &s.dk), (ix.v, &s.dv)] {
                let (dw, db) = wb_mut(g, i);
                linear_backward(
                    Some(&mut *dh),
                    dw,
                    Some(db),
                    dy,
                    &c.h,
                    &p.tensors[i.w].data,
                    rows,
                    true,
                );
            }
        }
    }
    c.norm.backward(gx, dh, p, g, ix.norm);
}

/// What a feed-forward sublayer keeps.
#[derive(Default)]
pub(crate) struct FfnCache<T> {
    pub norm: NormCache<T>,
    pub h: Vec<T>,   // [rows, d] LN output
    pub act: Vec<T>, // [rows, ffn] dropout(relu(fc1(h)))
}

fn ffn_weights<'a, T: Real>(p: &'a Params<T>, ix: &FfnIx) -> FfnWeights<'a, T> {
    let (w1, b1) = wb(p, ix.fc1);
    let (w2, b2) = wb(p, ix.fc2);
    FfnWeights { w1, b1, w2, b2 }
}

/// `x += dropout(ffn(LN(x)))`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn ffn_sub_forward<T: Real>(
    p: &Params<T>,
    ix: &FfnIx,
    x: &mut [T], // [rows, d]
    c: &mut FfnCache<T>,
    drop: &Dropout,
    site: u64,
    tmp: &mut Vec<T>,
) {
    let cfg = &p.config;
    let (d, f) = (cfg.d_model, cfg.ffn_dim);
    let rows = x.len() / d;
    c.norm
        .forward(&mut c.h, x, p, ix.norm, d, cfg.layer_norm_eps);
    let o = buf(tmp, rows * d);
    ffn_forward(
        o,
        buf(&mut c.act, rows * f),
        &c.h,
        &ffn_weights(p, ix),
        rows,
        drop.site(site + ACT),
    );
    dropout_forward(o, drop.site(site + OUT), 0);
    x.iter_mut().zip(o.iter()).for_each(|(v, &y)| *v += y);
}

/// Backward of [`ffn_sub_forward`], `gx` updated in place.
#[allow(clippy::too_many_arguments)]
pub(crate) fn ffn_sub_backward<T: Real>(
    p: &Params<T>,
    g: &mut Params<T>,
    ix: &FfnIx,
    gx: &mut [T], // [rows, d]
    c: &FfnCache<T>,
    drop: &Dropout,
    site: u64,
    s: &mut Scratch<T>,
) {
    let cfg = &p.config;
    let (d, f) = (cfg.d_model, cfg.ffn_dim);
    let rows = gx.len() / d;
    let dout = buf(&mut s.a, rows * d);
    dout.copy_from_slice(gx);
    dropout_backward(dout, drop.site(site + OUT), 0);
    let [w1, b1, w2, b2] = g
        .tensors
        .get_disjoint_mut([ix.fc1.w, ix.fc1.b, ix.fc2.w, ix.fc2.b])
        .expect("distinct tensors");
    let grads = FfnGrads {
        w1: &mut w1.data,
        b1: &mut b1.data,
        w2: &mut w2.data,
        b2: &mut b2.data,
    };
    let dh = buf(&mut s.h, rows * d);
    ffn_backward(
        dh,
        buf(&mut s.act, rows * f),
        grads,
        dout,
        &c.h,
        &c.act,
        &ffn_weights(p, ix),
        rows,
        drop.site(site + ACT),
    );
    c.norm.backward(gx, dh, p, g, ix.norm);
}
