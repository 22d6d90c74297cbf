//! The backward pass of the training model: the loss of a teacher-forced batch and its gradient,
//! accumulated into a [`Params`] of gradients.

use super::blocks::{attn_sub_backward, buf, ffn_sub_backward, wb, wb_mut};
use super::model::{dec_site, enc_site, forward, TrainWorkspace, DEC_INPUT_SITE, ENC_INPUT_SITE};
use super::ops::copy::{copy_loss_backward, copy_loss_forward, CopyInputs};
use super::ops::dropout::{dropout_backward, Dropout};
use super::ops::embedding::embedding_backward;
use super::ops::linear::linear_backward;
use super::{Params, Real, TrainBatch};
use crate::error::{KpgError, Result};
use crate::one2set::vocab::PAD_ID;

/// Teacher-forced loss `−Σ_r weights[r]·log(P_r(targets[r]) + 1e-8) / normalizer` over rows
/// (document, slot, step), with dropout; adds its gradient to `grads` and returns the loss.
#[allow(clippy::too_many_arguments)]
pub fn loss_backward<T: Real>(
    params: &Params<T>,
    batch: &TrainBatch,
    targets: &[u32], // [docs, N, steps] extended ids
    weights: &[T],   // [docs, N, steps] 0 = masked
    normalizer: T,
    dropout: Dropout,
    grads: &mut Params<T>,
    ws: &mut TrainWorkspace<T>,
) -> Result<T> {
    let p = params;
    let c = &p.config;
    let rows = batch.num_rows(c);
    if targets.len() != rows || weights.len() != rows {
        return Err(KpgError::Shape {
            op: "loss_backward",
            expected: format!("{rows} targets and weights"),
            got: format!("{}, {}", targets.len(), weights.len()),
        });
    }
    let per_doc = c.num_control_codes * batch.steps;
    for (r, &t) in targets.iter().enumerate() {
        let limit = c.vocab_size + batch.num_oov.get(r / per_doc).copied().unwrap_or(0);
        if t as usize >= limit {
            return Err(KpgError::TokenOutOfRange {
                id: t,
                vocab_size: limit,
            });
        }
    }
    if grads.tensors.len() != p.tensors.len() {
        return Err(KpgError::InvalidArgument(
            "gradients of another model".into(),
        ));
    }
    let ix = forward(p, batch, ws, &dropout, false)?;
    let (d, v) = (c.d_model, c.vocab_size);
    let drop = &dropout;
    let tokens = batch.num_tokens();

    // Loss and its gradient at the logits, p_gen and the copy attention.
    let inputs = CopyInputs {
        p_gen: &ws.p_gen,
        head0: &ws.head0,
        rows: &ws.copy_rows,
        src_ext: &batch.src_ext,
        targets,
        weights,
        vocab: v,
    };
    let loss = copy_loss_forward(&ws.probs, &inputs, normalizer, buf(&mut ws.p_target, rows));
    copy_loss_backward(
        &mut ws.probs,
        buf(&mut ws.g_zgen, rows),
        buf(&mut ws.g_head0, ws.cross_layout.num_head0()),
        &inputs,
        &ws.p_target,
        normalizer,
    );

    // Output head.
    let g_feats = buf(&mut ws.g_feats, rows * d);
    let g_out = &mut grads.tensors[ix.output_layer].data;
    linear_backward(
        Some(&mut *g_feats),
        g_out,
        None,
        &ws.probs,
        &ws.feats,
        &p.tensors[ix.output_layer].data,
        rows,
        false,
    );
    let (w, _) = wb(p, ix.p_gen);
    let (gw, gb) = wb_mut(grads, ix.p_gen);
    for (r, (gf, f)) in g_feats.chunks_mut(d).zip(ws.feats.chunks(d)).enumerate() {
        let dz = ws.g_zgen[r];
        gb[0] += dz;
        for i in 0..d {
            gw[i] += dz * f[i];
            gf[i] += dz * w[i];
        }
    }
    let (gw, gb) = wb_mut(grads, ix.output_fc);
    let g_ln = buf(&mut ws.g_ln, rows * d);
    linear_backward(
        Some(&mut *g_ln),
        gw,
        Some(gb),
        g_feats,
        &ws.dec_ln,
        &p.tensors[ix.output_fc.w].data,
        rows,
        false,
    );
    let gx = buf(&mut ws.g_dec_x, rows * d);
    gx.fill(T::zero());
    ws.dec_norm.backward(gx, g_ln, p, grads, ix.dec_norm);

    // Decoder layers, last first.
    let g_enc_out = buf(&mut ws.g_enc_out, tokens * d);
    g_enc_out.fill(T::zero());
    let last = c.decoder_layers - 1;
    for (l, (sa, ca, f)) in ix.dec.iter().enumerate().rev() {
        let cache = &ws.dec[l];
        ffn_sub_backward(p, grads, f, gx, &cache.2, drop, dec_site(l, 2), &mut ws.s);
        let dhead0 = (l == last).then_some(&ws.g_head0[..]);
        let kv = Some((&ws.enc_out[..], &mut *g_enc_out));
        attn_sub_backward(
            p,
            grads,
            ca,
            gx,
            &cache.1,
            kv,
            &ws.cross_layout,
            drop,
            dec_site(l, 1),
            dhead0,
            &mut ws.s,
        );
        attn_sub_backward(
            p,
            grads,
            sa,
            gx,
            &cache.0,
            None,
            &ws.self_layout,
            drop,
            dec_site(l, 0),
            None,
            &mut ws.s,
        );
    }
    dropout_backward(gx, drop.site(DEC_INPUT_SITE), 0);
    let (n_codes, steps) = (c.num_control_codes, batch.steps);
    let g_codes = &mut grads.tensors[ix.control].data;
    for (r, row) in gx.chunks(d).enumerate() {
        let slot = r / steps % n_codes;
        g_codes[slot * d..(slot + 1) * d]
            .iter_mut()
            .zip(row)
            .for_each(|(g, &x)| *g += x);
    }
    let scale = T::of((d as f64).sqrt());
    let (gw, gb) = wb_mut(grads, ix.dec_input);
    let g_in = buf(&mut ws.tmp, rows * d);
    linear_backward(
        Some(&mut *g_in),
        gw,
        Some(gb),
        gx,
        &ws.dec_in,
        &p.tensors[ix.dec_input.w].data,
        rows,
        false,
    );
    embedding_backward(
        &mut grads.tensors[ix.embed].data,
        &batch.dec_in,
        g_in,
        scale,
        Some(PAD_ID),
    );

    // Encoder, last layer first.
    let gx = buf(&mut ws.g_enc_x, tokens * d);
    gx.fill(T::zero());
    ws.enc_norm
        .backward(gx, &ws.g_enc_out, p, grads, ix.enc_norm);
    for (l, (a, f)) in ix.enc.iter().enumerate().rev() {
        let cache = &ws.enc[l];
        ffn_sub_backward(p, grads, f, gx, &cache.1, drop, enc_site(l, 1), &mut ws.s);
        attn_sub_backward(
            p,
            grads,
            a,
            gx,
            &cache.0,
            None,
            &ws.enc_layout,
            drop,
            enc_site(l, 0),
            None,
            &mut ws.s,
        );
    }
    dropout_backward(gx, drop.site(ENC_INPUT_SITE), 0);
    let (gw, gb) = wb_mut(grads, ix.enc_input);
    let g_in = buf(&mut ws.tmp, tokens * d);
    linear_backward(
        Some(&mut *g_in),
        gw,
        Some(gb),
        gx,
        &ws.enc_in,
        &p.tensors[ix.enc_input.w].data,
        tokens,
        false,
    );
    embedding_backward(
        &mut grads.tensors[ix.embed].data,
        &batch.src,
        g_in,
        scale,
        Some(PAD_ID),
    );
    Ok(loss)
}
