//! The One2Set generator's training forward and backward passes over [`Params`]: the same model
//! as [`crate::model::one2set`] (see there for the layers), teacher-forced on a [`TrainBatch`],
//! every slot's `steps` decoder rows at once, with dropout where the authors' code has it:
//! - on the encoder input (after `input_fc`) and the decoder input (after adding the position
//!   and the control code);
//! - on the attention probabilities (`multi_head_attn.py`), including those the copy mechanism
//!   reads;
//! - after the FFN's ReLU, and on every sublayer's output before the residual add.
//!
//! Decoder rows are ordered (document, slot, step).

use super::blocks::{
    attn_sub_forward, buf, ffn_sub_forward, wb, AttnCache, AttnIx, FfnCache, FfnIx, NormCache,
    Pair, Scratch,
};
use super::dists::{source_order, Dists};
use super::ops::attention::{head0_forward, AttnLayout, Group};
use super::ops::copy::{softmax_forward, CopyRow};
use super::ops::dropout::{dropout_forward, Dropout};
use super::ops::embedding::embedding_forward;
use super::ops::linear::linear_forward;
use super::ops::positions::{positions_forward, Positions};
use super::{Params, Real, TrainBatch};
use crate::error::Result;

/// Parameter indices of the whole model.
pub(crate) struct Ix {
    pub(crate) embed: usize,
    pub(crate) enc_input: Pair,
    pub(crate) enc: Vec<(AttnIx, FfnIx)>,
    pub(crate) enc_norm: Pair,
    pub(crate) dec_input: Pair,
    pub(crate) control: usize,
    pub(crate) dec: Vec<(AttnIx, AttnIx, FfnIx)>,
    pub(crate) dec_norm: Pair,
    pub(crate) output_fc: Pair,
    pub(crate) output_layer: usize,
    pub(crate) p_gen: Pair,
}

impl Ix {
    fn new<T: Real>(p: &Params<T>) -> Ix {
        let c = &p.config;
        let one = |n: &str| p.index(n).unwrap_or_else(|| panic!("{n} in tensor_specs"));
        Ix {
            embed: one("embed.weight"),
            enc_input: Pair::find(p, "encoder.input_fc"),
            enc: (0..c.encoder_layers)
                .map(|i| {
                    let l = format!("encoder.layer_stacks.{i}");
                    (
                        AttnIx::find(
                            p,
                            &format!("{l}.attn_layer_norm"),
                            &format!("{l}.self_attn"),
                        ),
                        FfnIx::find(p, &format!("{l}.ffn_layer_norm"), &l),
                    )
                })
                .collect(),
            enc_norm: Pair::find(p, "encoder.layer_norm"),
            dec_input: Pair::find(p, "decoder.input_fc"),
            control: one("decoder.control_code.weight"),
            dec: (0..c.decoder_layers)
                .map(|i| {
                    let l = format!("decoder.layer_stacks.{i}");
                    (
                        AttnIx::find(
                            p,
                            &format!("{l}.self_attn_layer_norm"),
                            &format!("{l}.self_attn"),
                        ),
                        AttnIx::find(
                            p,
                            &format!("{l}.encoder_attn_layer_norm"),
                            &format!("{l}.encoder_attn"),
                        ),
                        FfnIx::find(p, &format!("{l}.final_layer_norm"), &l),
                    )
                })
                .collect(),
            dec_norm: Pair::find(p, "decoder.layer_norm"),
            output_fc: Pair::find(p, "decoder.output_fc"),
            output_layer: one("decoder.output_layer.weight"),
            p_gen: Pair::find(p, "decoder.p_gen_linear"),
        }
    }
}

/// Dropout site bases: one per sublayer, distinct across the model.
pub(crate) fn enc_site(layer: usize, sub: u64) -> u64 {
    (1 << 32) | ((layer as u64) << 8) | (sub << 4)
}
pub(crate) fn dec_site(layer: usize, sub: u64) -> u64 {
    (2 << 32) | ((layer as u64) << 8) | (sub << 4)
}
pub(crate) const ENC_INPUT_SITE: u64 = (1 << 32) | 0xFF_FF00;
pub(crate) const DEC_INPUT_SITE: u64 = (2 << 32) | 0xFF_FF00;

/// Every activation the backward pass reads, and its scratch; sized by the largest batch seen.
#[derive(Default)]
pub struct TrainWorkspace<T> {
    pub(crate) positions: Option<Positions<T>>,
    pub(crate) enc_layout: AttnLayout,
    pub(crate) self_layout: AttnLayout,
    pub(crate) cross_layout: AttnLayout,
    pub(crate) enc_pos: Vec<usize>, // [tokens] position of each source token (1-based in its document)
    pub(crate) enc_in: Vec<T>,      // [tokens, d] sqrt(d)·embed(src) + pos, input_fc's input
    pub(crate) enc_x: Vec<T>,       // [tokens, d] residual stream
    pub(crate) enc: Vec<(AttnCache<T>, FfnCache<T>)>,
    pub(crate) enc_norm: NormCache<T>,
    pub(crate) enc_out: Vec<T>, // [tokens, d]
    /// The source (`src`, `doc_lens`) whose dropout-free encoder output `enc_out` holds, for
    /// [`forward_dists_reusing_encoder`]; None after a forward with dropout.
    pub(crate) enc_source: Option<(Vec<u32>, Vec<usize>)>,
    pub(crate) dec_in: Vec<T>, // [rows, d] sqrt(d)·embed(dec_in), input_fc's input
    pub(crate) dec_x: Vec<T>,  // [rows, d] residual stream
    pub(crate) dec: Vec<(AttnCache<T>, AttnCache<T>, FfnCache<T>)>,
    pub(crate) dec_norm: NormCache<T>,
    pub(crate) dec_ln: Vec<T>,          // [rows, d]
    pub(crate) feats: Vec<T>,           // [rows, d] output_fc(LN(x))
    pub(crate) probs: Vec<T>,           // [rows, vocab] softmax, then d loss / d logits
    pub(crate) p_gen: Vec<T>,           // [rows]
    pub(crate) head0: Vec<T>,           // [cross_layout.num_head0()] copy attention
    pub(crate) copy_rows: Vec<CopyRow>, // [rows]
    pub(crate) order: Vec<u32>,         // [tokens] source positions by extended id, per document
    pub(crate) p_target: Vec<T>,        // [rows]
    pub(crate) tmp: Vec<T>,             // [rows or tokens, d]
    pub(crate) s: Scratch<T>,
    pub(crate) g_enc_x: Vec<T>,   // [tokens, d]
    pub(crate) g_enc_out: Vec<T>, // [tokens, d]
    pub(crate) g_dec_x: Vec<T>,   // [rows, d]
    pub(crate) g_feats: Vec<T>,   // [rows, d]
    pub(crate) g_ln: Vec<T>,      // [rows, d]
    pub(crate) g_zgen: Vec<T>,    // [rows]
    pub(crate) g_head0: Vec<T>,   // [cross_layout.num_head0()]
}

impl<T: Real> TrainWorkspace<T> {
    pub fn new() -> Self {
        Self::default()
    }
}

/// The training forward pass up to the output distributions (left in the workspace).
/// With `reuse_encoder`, the encoder is skipped when the workspace already holds the
/// dropout-free encoder output of this batch's source (the parameters must be those it was
/// computed with).
pub(crate) fn forward<T: Real>(
    p: &Params<T>,
    b: &TrainBatch,
    ws: &mut TrainWorkspace<T>,
    drop: &Dropout,
    reuse_encoder: bool,
) -> Result<Ix> {
    let c = &p.config;
    b.validate(c)?;
    let ix = Ix::new(p);
    let (d, n_codes, steps, heads) = (c.d_model, c.num_control_codes, b.steps, c.num_heads);
    let rows = b.num_rows(c);
    let scale = T::of((d as f64).sqrt());
    if ws.positions.is_none() {
        ws.positions = Some(Positions::new(
            (c.max_source_len + 1).max(c.max_keyphrase_len),
            d,
        ));
    }

    // Layouts: documents, slots, and each document's slots over its source.
    let mut spans = Vec::with_capacity(b.num_docs());
    let mut at = 0;
    for &n in &b.doc_lens {
        spans.push((at, n));
        at += n;
    }
    let group = |q_start, q_len, k_start, k_len, causal| Group {
        q_start,
        q_len,
        k_start,
        k_len,
        causal,
    };
    ws.enc_layout = AttnLayout::new(
        spans
            .iter()
            .map(|&(s, n)| group(s, n, s, n, false))
            .collect(),
        heads,
    );
    ws.self_layout = AttnLayout::new(
        (0..b.num_docs() * n_codes)
            .map(|s| group(s * steps, steps, s * steps, steps, true))
            .collect(),
        heads,
    );
    let per_doc = n_codes * steps;
    ws.cross_layout = AttnLayout::new(
        spans
            .iter()
            .enumerate()
            .map(|(i, &(s, n))| group(i * per_doc, per_doc, s, n, false))
            .collect(),
        heads,
    );

    // Encoder, unless this source's dropout-free output is already in the workspace.
    let encoded = reuse_encoder
        && !drop.is_on()
        && ws
            .enc_source
            .as_ref()
            .is_some_and(|(src, lens)| *src == b.src && *lens == b.doc_lens);
    if !encoded {
        encoder_forward(p, b, ws, drop, &ix);
    }
    let pos = ws.positions.as_ref().unwrap();

    // Decoder: x = dropout(input_fc(sqrt(d)·embed(dec_in)) + pos[step] + control_code[slot]).
    let e = buf(&mut ws.dec_in, rows * d);
    embedding_forward(e, &b.dec_in, &p.tensors[ix.embed].data, scale);
    let (w, bias) = wb(p, ix.dec_input);
    let x = buf(&mut ws.dec_x, rows * d);
    linear_forward(x, &ws.dec_in, w, Some(bias), rows);
    let codes = &p.tensors[ix.control].data;
    for (r, row) in x.chunks_mut(d).enumerate() {
        let (slot, t) = (r / steps % n_codes, r % steps);
        let cc = &codes[slot * d..(slot + 1) * d];
        for ((v, &ps), &k) in row.iter_mut().zip(pos.row(t)).zip(cc) {
            *v += ps + k;
        }
    }
    dropout_forward(x, drop.site(DEC_INPUT_SITE), 0);
    ws.dec.resize_with(c.decoder_layers, Default::default);
    for (l, (sa, ca, f)) in ix.dec.iter().enumerate() {
        let cache = &mut ws.dec[l];
        attn_sub_forward(
            p,
            sa,
            &mut ws.dec_x,
            &mut cache.0,
            None,
            &ws.self_layout,
            drop,
            dec_site(l, 0),
            &mut ws.tmp,
        );
        attn_sub_forward(
            p,
            ca,
            &mut ws.dec_x,
            &mut cache.1,
            Some(&ws.enc_out),
            &ws.cross_layout,
            drop,
            dec_site(l, 1),
            &mut ws.tmp,
        );
        ffn_sub_forward(
            p,
            f,
            &mut ws.dec_x,
            &mut cache.2,
            drop,
            dec_site(l, 2),
            &mut ws.tmp,
        );
    }

    // Output: features, vocabulary softmax, p_gen, copy attention.
    ws.dec_norm.forward(
        &mut ws.dec_ln,
        &ws.dec_x,
        p,
        ix.dec_norm,
        d,
        c.layer_norm_eps,
    );
    let (w, bias) = wb(p, ix.output_fc);
    linear_forward(
        buf(&mut ws.feats, rows * d),
        &ws.dec_ln,
        w,
        Some(bias),
        rows,
    );
    let v = c.vocab_size;
    let probs = buf(&mut ws.probs, rows * v);
    linear_forward(
        probs,
        &ws.feats,
        &p.tensors[ix.output_layer].data,
        None,
        rows,
    );
    softmax_forward(probs, v);
    let (w, bias) = wb(p, ix.p_gen);
    ws.p_gen.clear();
    ws.p_gen.extend(ws.feats.chunks(d).map(|f| {
        let z = f.iter().zip(w).fold(bias[0], |s, (&a, &b)| s + a * b);
        T::one() / (T::one() + (-z).exp())
    }));
    let last = c.decoder_layers - 1;
    head0_forward(
        buf(&mut ws.head0, ws.cross_layout.num_head0()),
        &ws.dec[last].1.probs,
        &ws.cross_layout,
        heads,
        drop.site(dec_site(last, 1) + super::blocks::PROBS),
    );
    ws.copy_rows.clear();
    for (g, grp) in ws.cross_layout.groups.iter().enumerate() {
        for i in 0..grp.q_len {
            ws.copy_rows.push(CopyRow {
                head0_at: ws.cross_layout.head0_at[g] + i * grp.k_len,
                src_at: grp.k_start,
                len: grp.k_len,
            });
        }
    }
    Ok(ix)
}

/// Encoder: x = dropout(input_fc(sqrt(d)·embed(src) + pos)), positions 1.. per document; pre-LN
/// blocks; the final LayerNorm into `ws.enc_out`.
fn encoder_forward<T: Real>(
    p: &Params<T>,
    b: &TrainBatch,
    ws: &mut TrainWorkspace<T>,
    drop: &Dropout,
    ix: &Ix,
) {
    let c = &p.config;
    let (d, tokens) = (c.d_model, b.num_tokens());
    let scale = T::of((d as f64).sqrt());
    let pos = ws.positions.as_ref().expect("made before the encoder runs");
    ws.enc_pos.clear();
    ws.enc_pos.extend(b.doc_lens.iter().flat_map(|&n| 1..=n));
    let e = buf(&mut ws.enc_in, tokens * d);
    embedding_forward(e, &b.src, &p.tensors[ix.embed].data, scale);
    positions_forward(e, &ws.enc_pos, pos);
    let (w, bias) = wb(p, ix.enc_input);
    let x = buf(&mut ws.enc_x, tokens * d);
    linear_forward(x, &ws.enc_in, w, Some(bias), tokens);
    dropout_forward(x, drop.site(ENC_INPUT_SITE), 0);
    ws.enc.resize_with(c.encoder_layers, Default::default);
    for (l, (a, f)) in ix.enc.iter().enumerate() {
        let (ca, cf) = {
            let e = &mut ws.enc[l];
            (&mut e.0, &mut e.1)
        };
        attn_sub_forward(
            p,
            a,
            &mut ws.enc_x,
            ca,
            None,
            &ws.enc_layout,
            drop,
            enc_site(l, 0),
            &mut ws.tmp,
        );
        ffn_sub_forward(p, f, &mut ws.enc_x, cf, drop, enc_site(l, 1), &mut ws.tmp);
    }
    ws.enc_norm.forward(
        &mut ws.enc_out,
        &ws.enc_x,
        p,
        ix.enc_norm,
        d,
        c.layer_norm_eps,
    );
    ws.enc_source = (!drop.is_on()).then(|| (b.src.clone(), b.doc_lens.clone()));
}

/// The copy-augmented output distributions of every decoder row (no dropout, nothing kept for a
/// backward pass), for target assignment.
pub fn forward_dists<'a, T: Real>(
    params: &Params<T>,
    batch: &'a TrainBatch,
    ws: &'a mut TrainWorkspace<T>,
) -> Result<Dists<'a, T>> {
    forward(params, batch, ws, &Dropout::OFF, false)?;
    source_order(&mut ws.order, &batch.src_ext, &batch.doc_lens);
    Ok(dists_of(ws, batch, params.config.vocab_size))
}

/// [`forward_dists`], reusing the encoder output of the previous dropout-free forward on this
/// workspace when the batch's source is the same: the greedy scoring steps of target assignment
/// decode the same documents twice. The parameters must not have changed in between.
pub(crate) fn forward_dists_reusing_encoder<'a, T: Real>(
    params: &Params<T>,
    batch: &'a TrainBatch,
    ws: &'a mut TrainWorkspace<T>,
) -> Result<Dists<'a, T>> {
    forward(params, batch, ws, &Dropout::OFF, true)?;
    source_order(&mut ws.order, &batch.src_ext, &batch.doc_lens);
    Ok(dists_of(ws, batch, params.config.vocab_size))
}

/// The distributions a forward pass left in `ws`.
fn dists_of<'a, T: Real>(
    ws: &'a TrainWorkspace<T>,
    batch: &'a TrainBatch,
    vocab: usize,
) -> Dists<'a, T> {
    Dists {
        vocab,
        probs: &ws.probs,
        p_gen: &ws.p_gen,
        head0: &ws.head0,
        copy_rows: &ws.copy_rows,
        src_ext: &batch.src_ext,
        order: &ws.order,
    }
}
