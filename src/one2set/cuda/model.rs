//! The One2Set generator on the GPU (feature `cuda`), the same computation as
//! [`crate::model::one2set`] (its specification) with bf16 weights and activations, f32 residual
//! stream and accumulation: cuBLAS for the matrix products, `kernels/one2set_*.cu` for the rest.
//!
//! - the encoder over the packed documents of a batch (no padding; attention per document);
//! - cross-attention keys and values for every decoder layer, once per batch;
//! - a decoding step for all active slots of all documents: self-attention over each slot's own
//!   tokens (caches indexed by slot, so dropping finished slots moves nothing), cross-attention that
//!   serves a document's slots from its keys and values read once, and the fused finish.
//!
//! Weights are uploaded once from the memory map; the q, k, v projections of a self-attention (and
//! the k, v of a cross-attention) are concatenated into one matrix, so each is one GEMM. All
//! buffers are [`Scratch`] sized when a batch is encoded: the decoding loop allocates nothing.

use half::bf16;

use crate::backend::cuda::gemm::linear_bf16;
use crate::backend::cuda::one2set_attention::{
    cross_attention_forward, encoder_attention_forward, slot_attention_forward, CrossShape,
    PackedDocs, SlotShape,
};
use crate::backend::cuda::one2set_finish::{finish_forward, logits_f32, CopySource, FinishShape};
use crate::backend::cuda::one2set_layers::{
    bias_forward, decoder_input_forward, embed_forward, layernorm_forward, residual_forward,
};
use crate::backend::cuda::{CudaDevice, Scratch};
use crate::error::{KpgError, Result};

pub use super::weights::One2SetCuda;
use super::weights::{DevLinear, DevNorm};
use crate::one2set::batch_layout::PackedBatch;

/// Device buffers of one batch, grown on demand and reused.
pub struct One2SetCudaWorkspace {
    // The batch, uploaded once.
    ids: Scratch<i32>,       // [tokens]
    positions: Scratch<i32>, // [tokens]
    doc_start: Scratch<i32>, // [docs]
    doc_len: Scratch<i32>,   // [docs]
    src_ext: Scratch<i32>,   // [tokens]
    src_next: Scratch<i32>,  // [tokens]
    src_first: Scratch<i32>, // [tokens]
    // Activations, sized for max(tokens, slots) rows.
    x: Scratch<f32>,     // [rows, d] residual stream
    h: Scratch<bf16>,    // [rows, d] normed sub-block input; the encoder output at the end
    qkv: Scratch<bf16>,  // [rows, 3d]
    attn: Scratch<bf16>, // [rows, d]
    y: Scratch<bf16>,    // [rows, d] projections before their bias
    ffn: Scratch<bf16>,  // [rows, ffn]
    // Decoder state.
    cross_kv: Vec<Scratch<bf16>>, // [decoder_layers][tokens, 2d]
    self_k: Vec<Scratch<bf16>>,   // [decoder_layers][slots, max_keyphrase_len, d]
    self_v: Vec<Scratch<bf16>>,   // [decoder_layers][slots, max_keyphrase_len, d]
    step_in: Scratch<i32>,        // [3·rows + 3·groups] see batch_layout::step_inputs
    copy_attn: Scratch<f32>,      // [rows, max_len]
    features: Scratch<bf16>,      // [rows, d]
    logits: Scratch<f32>,         // [rows, vocab]
    picks: Scratch<i32>,          // [3, rows]
    packed: PackedDocs,
    num_slots: usize,
}

/// Which workspace buffer a projection into the residual stream reads.
#[derive(Clone, Copy)]
enum ResidualInput {
    /// `h`: normed rows (the encoder's input projection).
    Normed,
    /// `attn`: an attention block's output (its output projection).
    Attention,
}

impl Default for One2SetCudaWorkspace {
    fn default() -> Self {
        One2SetCudaWorkspace {
            ids: Scratch::new("one2set source ids"),
            positions: Scratch::new("one2set source positions"),
            doc_start: Scratch::new("one2set document starts"),
            doc_len: Scratch::new("one2set document lengths"),
            src_ext: Scratch::new("one2set extended ids"),
            src_next: Scratch::new("one2set copy chains"),
            src_first: Scratch::new("one2set first occurrences"),
            x: Scratch::new("one2set residual stream"),
            h: Scratch::new("one2set normed activations"),
            qkv: Scratch::new("one2set q/k/v"),
            attn: Scratch::new("one2set attention output"),
            y: Scratch::new("one2set projections"),
            ffn: Scratch::new("one2set ffn activations"),
            cross_kv: Vec::new(),
            self_k: Vec::new(),
            self_v: Vec::new(),
            step_in: Scratch::new("one2set step inputs"),
            copy_attn: Scratch::new("one2set copy attention"),
            features: Scratch::new("one2set output features"),
            logits: Scratch::new("one2set logits"),
            picks: Scratch::new("one2set picks"),
            packed: PackedDocs {
                docs: 0,
                tokens: 0,
                max_len: 0,
            },
            num_slots: 0,
        }
    }
}

/// One step's picks, as downloaded.
pub struct StepPicks<'a> {
    pub tokens: &'a [i32],
    pub attn_argmax: &'a [i32],
    pub prob_bits: &'a [i32],
}

impl One2SetCuda {
    fn dev(&self) -> &CudaDevice {
        &self.dev
    }

    fn eps(&self) -> f32 {
        self.config.layer_norm_eps as f32
    }

    /// Encodes a packed batch and prepares every decoder layer's cross-attention keys and values
    /// and the slots' caches; sizes every buffer the decoding steps use.
    pub fn encode_forward(&self, ws: &mut One2SetCudaWorkspace, batch: &PackedBatch) -> Result<()> {
        let c = &self.config;
        let dev = self.dev();
        let (d, f) = (c.d_model, c.ffn_dim);
        let tokens = batch.tokens();
        if batch.max_len > c.max_source_len || batch.doc_len.contains(&0) {
            return Err(KpgError::Shape {
                op: "One2SetCuda::encode_forward",
                expected: format!("documents of 1..={} tokens", c.max_source_len),
                got: format!("a document of {} tokens", batch.max_len),
            });
        }
        if let Some(&id) = batch
            .ids
            .iter()
            .find(|&&i| i < 0 || i as usize >= c.vocab_size)
        {
            return Err(KpgError::TokenOutOfRange {
                id: id as u32,
                vocab_size: c.vocab_size,
            });
        }
        let slots = batch.docs() * c.num_control_codes;
        let rows = tokens.max(slots);
        ws.packed = PackedDocs {
            docs: batch.docs(),
            tokens,
            max_len: batch.max_len,
        };
        ws.num_slots = slots;
        for (buf, host, what) in [
            (&mut ws.ids, &batch.ids, "source ids"),
            (&mut ws.positions, &batch.positions, "source positions"),
            (&mut ws.doc_start, &batch.doc_start, "document starts"),
            (&mut ws.doc_len, &batch.doc_len, "document lengths"),
            (&mut ws.src_ext, &batch.ext, "extended ids"),
            (&mut ws.src_next, &batch.next, "copy chains"),
            (&mut ws.src_first, &batch.first, "first occurrences"),
        ] {
            dev.upload_into(host, buf.get(dev, host.len())?, what)?;
        }
        // Every buffer at its largest for this batch, so that the steps allocate nothing.
        ws.x.get(dev, rows * d)?;
        ws.h.get(dev, rows * d)?;
        ws.qkv.get(dev, rows * 3 * d)?;
        ws.attn.get(dev, rows * d)?;
        ws.y.get(dev, rows * d)?;
        ws.ffn.get(dev, rows * f)?;
        ws.step_in.get(dev, 6 * slots)?;
        ws.copy_attn.get(dev, slots * batch.max_len)?;
        ws.features.get(dev, slots * d)?;
        ws.logits.get(dev, slots * c.vocab_size)?;
        ws.picks.get(dev, 3 * slots)?;
        let layers = c.decoder_layers;
        ws.cross_kv
            .resize_with(layers, || Scratch::new("one2set cross-attention k/v"));
        ws.self_k
            .resize_with(layers, || Scratch::new("one2set slot key cache"));
        ws.self_v
            .resize_with(layers, || Scratch::new("one2set slot value cache"));
        for l in 0..layers {
            ws.cross_kv[l].get(dev, tokens * 2 * d)?;
            ws.self_k[l].get(dev, slots * c.max_keyphrase_len * d)?;
            ws.self_v[l].get(dev, slots * c.max_keyphrase_len * d)?;
        }

        // x = input_fc(sqrt(d)·embed(ids) + pos), positions 1..=len in every document.
        let scale = (d as f32).sqrt();
        let n = tokens * d;
        embed_forward(
            dev,
            &mut ws.h.get(dev, n)?.slice_mut(..n),
            &ws.ids.get(dev, tokens)?.slice(..tokens),
            &ws.positions.get(dev, tokens)?.slice(..tokens),
            &self.embed.as_view(),
            &self.positions.as_view(),
            (tokens, d),
            scale,
        )?;
        self.linear_into_residual(
            ws,
            ResidualInput::Normed,
            &self.encoder_input,
            tokens,
            false,
        )?;

        for layer in &self.encoder_layers {
            self.norm(ws, &layer.attn_norm, tokens)?;
            {
                let h = ws.h.get(dev, n)?;
                let qkv = ws.qkv.get(dev, tokens * 3 * d)?;
                linear_bf16(dev, qkv, h, &layer.qkv.w, (tokens, 3 * d, d), 0.0)?;
                bias_forward(
                    dev,
                    &mut qkv.slice_mut(..tokens * 3 * d),
                    &layer.qkv.b.as_view(),
                    (tokens, 3 * d),
                    false,
                )?;
            }
            encoder_attention_forward(
                dev,
                &mut ws.attn.get(dev, n)?.slice_mut(..n),
                &ws.qkv.get(dev, tokens * 3 * d)?.slice(..tokens * 3 * d),
                &ws.doc_start.get(dev, batch.docs())?.slice(..batch.docs()),
                &ws.doc_len.get(dev, batch.docs())?.slice(..batch.docs()),
                ws.packed,
                c.num_heads,
                c.head_dim(),
            )?;
            self.linear_into_residual(ws, ResidualInput::Attention, &layer.out, tokens, true)?;
            self.ffn_forward(ws, &layer.ffn_norm, &layer.ffn_in, &layer.ffn_out, tokens)?;
        }
        self.norm(ws, &self.encoder_norm, tokens)?;

        // Cross-attention keys and values of every decoder layer, from the encoder output in h.
        for (l, layer) in self.decoder_layers.iter().enumerate() {
            let h = ws.h.get(dev, n)?;
            let kv = ws.cross_kv[l].get(dev, tokens * 2 * d)?;
            linear_bf16(dev, kv, h, &layer.cross_kv.w, (tokens, 2 * d, d), 0.0)?;
            bias_forward(
                dev,
                &mut kv.slice_mut(..tokens * 2 * d),
                &layer.cross_kv.b.as_view(),
                (tokens, 2 * d),
                false,
            )?;
        }
        Ok(())
    }

    /// h = LayerNorm(x) over the first `rows` rows.
    fn norm(&self, ws: &mut One2SetCudaWorkspace, norm: &DevNorm, rows: usize) -> Result<()> {
        let dev = self.dev();
        let n = rows * self.config.d_model;
        let x = ws.x.get(dev, n)?;
        let h = ws.h.get(dev, n)?;
        layernorm_forward(
            dev,
            &mut h.slice_mut(..n),
            &x.slice(..n),
            &norm.weight.as_view(),
            &norm.bias.as_view(),
            (rows, self.config.d_model),
            self.eps(),
        )
    }

    /// x = input · wᵀ + b (the start of the residual stream, `accumulate` false) or x += it;
    /// the input is the normed rows `h`, or an attention block's output `attn`.
    fn linear_into_residual(
        &self,
        ws: &mut One2SetCudaWorkspace,
        input: ResidualInput,
        lin: &DevLinear,
        rows: usize,
        accumulate: bool,
    ) -> Result<()> {
        let dev = self.dev();
        let d = self.config.d_model;
        let n = rows * d;
        let x_in = match input {
            ResidualInput::Normed => ws.h.get(dev, n)?,
            ResidualInput::Attention => ws.attn.get(dev, n)?,
        };
        let y = ws.y.get(dev, n)?;
        linear_bf16(dev, y, x_in, &lin.w, (rows, d, d), 0.0)?;
        let x = ws.x.get(dev, n)?;
        residual_forward(
            dev,
            &mut x.slice_mut(..n),
            &y.slice(..n),
            &lin.b.as_view(),
            (rows, d),
            accumulate,
        )
    }

    /// x += ffn_out(relu(ffn_in(LN(x)))).
    fn ffn_forward(
        &self,
        ws: &mut One2SetCudaWorkspace,
        norm: &DevNorm,
        ffn_in: &DevLinear,
        ffn_out: &DevLinear,
        rows: usize,
    ) -> Result<()> {
        let dev = self.dev();
        let (d, f) = (self.config.d_model, self.config.ffn_dim);
        self.norm(ws, norm, rows)?;
        let h = ws.h.get(dev, rows * d)?;
        let mid = ws.ffn.get(dev, rows * f)?;
        linear_bf16(dev, mid, h, &ffn_in.w, (rows, f, d), 0.0)?;
        bias_forward(
            dev,
            &mut mid.slice_mut(..rows * f),
            &ffn_in.b.as_view(),
            (rows, f),
            true,
        )?;
        let y = ws.y.get(dev, rows * d)?;
        linear_bf16(dev, y, mid, &ffn_out.w, (rows, d, f), 0.0)?;
        let x = ws.x.get(dev, rows * d)?;
        residual_forward(
            dev,
            &mut x.slice_mut(..rows * d),
            &y.slice(..rows * d),
            &ffn_out.b.as_view(),
            (rows, d),
            true,
        )
    }

    /// One greedy step of `rows` active slots after [`Self::encode_forward`]. `step_in` is
    /// [`crate::one2set::batch_layout::step_inputs`]'s buffer (slots ascending, each below the batch's
    /// slots, tokens in the vocabulary: checked here). Returns the downloaded picks in `host`.
    pub fn decode_step_forward<'h>(
        &self,
        ws: &mut One2SetCudaWorkspace,
        step: usize,
        step_in: &[i32],
        (rows, groups, max_group_rows): (usize, usize, usize),
        host: &'h mut Vec<i32>,
    ) -> Result<StepPicks<'h>> {
        let c = &self.config;
        let dev = self.dev();
        let v = c.vocab_size;
        const OP: &str = "One2SetCuda::decode_step_forward";
        if step >= c.max_keyphrase_len || step_in.len() != 3 * rows + 3 * groups {
            return Err(KpgError::Shape {
                op: OP,
                expected: format!(
                    "a step below {} and 3·rows + 3·groups inputs",
                    c.max_keyphrase_len
                ),
                got: format!("step {step}, {} inputs", step_in.len()),
            });
        }
        let (slots, tokens) = (&step_in[..rows], &step_in[rows..2 * rows]);
        if slots.windows(2).any(|w| w[0] >= w[1])
            || slots.iter().any(|&s| s < 0 || s as usize >= ws.num_slots)
            || tokens.iter().any(|&t| t < 0 || t as usize >= v)
        {
            return Err(KpgError::Shape {
                op: OP,
                expected: format!(
                    "ascending slots below {} and tokens below {v}",
                    ws.num_slots
                ),
                got: format!("{rows} rows"),
            });
        }
        if rows == 0 {
            host.clear();
            return Ok(StepPicks {
                tokens: &[],
                attn_argmax: &[],
                prob_bits: &[],
            });
        }
        // The step's inputs live outside the workspace for the step, so that views of them can be
        // held while the other buffers are written.
        let mut inputs = std::mem::replace(&mut ws.step_in, Scratch::new("one2set step inputs"));
        let result = self.decode_step_inner(
            ws,
            &mut inputs,
            step,
            step_in,
            (rows, groups, max_group_rows),
        );
        ws.step_in = inputs;
        result?;
        host.resize(3 * rows, 0);
        dev.download_into(ws.picks.get(dev, 3 * rows)?, host, "one2set picks")?;
        let (tokens, rest) = host.split_at(rows);
        let (attn_argmax, prob_bits) = rest.split_at(rows);
        Ok(StepPicks {
            tokens,
            attn_argmax,
            prob_bits,
        })
    }

    fn decode_step_inner(
        &self,
        ws: &mut One2SetCudaWorkspace,
        inputs: &mut Scratch<i32>,
        step: usize,
        step_in: &[i32],
        (rows, groups, max_group_rows): (usize, usize, usize),
    ) -> Result<()> {
        let c = &self.config;
        let dev = self.dev();
        let (d, v, n_codes) = (c.d_model, c.vocab_size, c.num_control_codes);
        let n = rows * d;
        let buf = inputs.get(dev, step_in.len())?;
        dev.upload_into(step_in, buf, "one2set step inputs")?;
        let slots_v = buf.slice(..rows);
        let tokens_v = buf.slice(rows..2 * rows);
        let no_pos_v = buf.slice(2 * rows..3 * rows);
        let groups_v = buf.slice(3 * rows..3 * rows + 3 * groups);
        let docs = ws.packed.docs;

        // x = input_fc(sqrt(d)·embed(token)) + bias + pos[step] + control_code[code].
        embed_forward(
            dev,
            &mut ws.h.get(dev, n)?.slice_mut(..n),
            &tokens_v,
            &no_pos_v,
            &self.embed.as_view(),
            &self.positions.as_view(),
            (rows, d),
            (d as f32).sqrt(),
        )?;
        {
            let h = ws.h.get(dev, n)?;
            let y = ws.y.get(dev, n)?;
            linear_bf16(dev, y, h, &self.decoder_input.w, (rows, d, d), 0.0)?;
            decoder_input_forward(
                dev,
                &mut ws.x.get(dev, n)?.slice_mut(..n),
                &y.slice(..n),
                &self.decoder_input.b.as_view(),
                &self.positions.slice(step * d..(step + 1) * d),
                &self.control_codes.as_view(),
                &slots_v,
                (rows, d, n_codes),
            )?;
        }

        let last = self.decoder_layers.len().saturating_sub(1);
        for (l, layer) in self.decoder_layers.iter().enumerate() {
            // Self-attention over the slot's own tokens 0..=step.
            self.norm(ws, &layer.self_norm, rows)?;
            {
                let h = ws.h.get(dev, n)?;
                let qkv = ws.qkv.get(dev, 3 * n)?;
                linear_bf16(dev, qkv, h, &layer.self_qkv.w, (rows, 3 * d, d), 0.0)?;
                let cache_len = ws.num_slots * c.max_keyphrase_len * d;
                slot_attention_forward(
                    dev,
                    &mut ws.attn.get(dev, n)?.slice_mut(..n),
                    &mut ws.self_k[l].get(dev, cache_len)?.slice_mut(..cache_len),
                    &mut ws.self_v[l].get(dev, cache_len)?.slice_mut(..cache_len),
                    &qkv.slice(..3 * n),
                    &layer.self_qkv.b.as_view(),
                    &slots_v,
                    SlotShape {
                        rows,
                        slots: ws.num_slots,
                        step,
                        max_len: c.max_keyphrase_len,
                        num_heads: c.num_heads,
                        head_dim: c.head_dim(),
                    },
                )?;
            }
            self.linear_into_residual(ws, ResidualInput::Attention, &layer.self_out, rows, true)?;

            // Cross-attention: each document's active slots over its encoder output.
            self.norm(ws, &layer.cross_norm, rows)?;
            {
                let h = ws.h.get(dev, n)?;
                let q = ws.qkv.get(dev, n)?;
                linear_bf16(dev, q, h, &layer.cross_q.w, (rows, d, d), 0.0)?;
                let copy_stride = ws.packed.max_len;
                let copy = ws.copy_attn.get(dev, rows * copy_stride)?;
                let mut copy_view = copy.slice_mut(..rows * copy_stride);
                cross_attention_forward(
                    dev,
                    &mut ws.attn.get(dev, n)?.slice_mut(..n),
                    if l == last {
                        Some(&mut copy_view)
                    } else {
                        None
                    },
                    &q.slice(..n),
                    &layer.cross_q.b.as_view(),
                    &ws.cross_kv[l]
                        .get(dev, ws.packed.tokens * 2 * d)?
                        .slice(..ws.packed.tokens * 2 * d),
                    &groups_v,
                    &ws.doc_start.get(dev, docs)?.slice(..docs),
                    &ws.doc_len.get(dev, docs)?.slice(..docs),
                    CrossShape {
                        rows,
                        groups,
                        max_group_rows,
                        packed: ws.packed,
                        num_heads: c.num_heads,
                        head_dim: c.head_dim(),
                        copy_stride,
                    },
                )?;
            }
            self.linear_into_residual(ws, ResidualInput::Attention, &layer.cross_out, rows, true)?;
            self.ffn_forward(ws, &layer.ffn_norm, &layer.ffn_in, &layer.ffn_out, rows)?;
        }

        // Output features, f32 logits, and the fused finish.
        self.norm(ws, &self.decoder_norm, rows)?;
        let h = ws.h.get(dev, n)?;
        let features = ws.features.get(dev, n)?;
        linear_bf16(dev, features, h, &self.output_fc.w, (rows, d, d), 0.0)?;
        bias_forward(
            dev,
            &mut features.slice_mut(..n),
            &self.output_fc.b.as_view(),
            (rows, d),
            false,
        )?;
        let logits = ws.logits.get(dev, rows * v)?;
        logits_f32(
            dev,
            &mut logits.slice_mut(..rows * v),
            &features.slice(..n),
            &self.output_layer.as_view(),
            (rows, v, d),
        )?;
        let tokens = ws.packed.tokens;
        let copy_stride = ws.packed.max_len;
        let (ext, next, first) = (
            ws.src_ext.get(dev, tokens)?.slice(..tokens),
            ws.src_next.get(dev, tokens)?.slice(..tokens),
            ws.src_first.get(dev, tokens)?.slice(..tokens),
        );
        finish_forward(
            dev,
            &mut ws.picks.get(dev, 3 * rows)?.slice_mut(..3 * rows),
            &logits.slice(..rows * v),
            &features.slice(..n),
            &self.p_gen_w.as_view(),
            self.p_gen_b,
            &ws.copy_attn
                .get(dev, rows * copy_stride)?
                .slice(..rows * copy_stride),
            &slots_v,
            &ws.doc_start.get(dev, docs)?.slice(..docs),
            &ws.doc_len.get(dev, docs)?.slice(..docs),
            CopySource {
                ext: &ext,
                next: &next,
                first: &first,
            },
            FinishShape {
                rows,
                vocab: v,
                d,
                docs,
                tokens,
                copy_stride,
                num_codes: n_codes,
            },
        )
    }
}
