//! The One2Set generator ("SetTrans"; Ye et al. 2021, "One2Set: Generating Diverse Keyphrases as a
//! Set", ACL), forward only, on the CPU backend. The layers follow the authors' released code,
//! jiacheng-ye/kg_one2set (`pykp/encoder/transformer.py`, `pykp/decoder/transformer.py`,
//! `pykp/modules/multi_head_attn.py`), with dropout off:
//!
//! - one word embedding `[vocab, d]` shared by encoder and decoder; frozen sinusoidal positions
//!   ([`SinusoidTable`], row 0 zero);
//! - encoder input: `input_fc(sqrt(d)·embed(src) + pos)`, positions 1, 2, … (the authors add the
//!   position before `input_fc` in the encoder and after it in the decoder; both kept);
//! - pre-LayerNorm blocks: `x += attn(LN(x))`, `x += ffn(LN(x))` with `ffn = fc2(relu(fc1))`, and a
//!   final LayerNorm after the last block;
//! - decoder input of slot n at step t: `input_fc(sqrt(d)·embed(token)) + pos[t] + control_code[n]`,
//!   positions restarting at 0 in every slot; blocks `x += self_attn(LN(x))` (a slot sees only its
//!   own earlier tokens), `x += cross_attn(LN(x), encoder output)`, `x += ffn(LN(x))`; final LN;
//! - output: `h = output_fc(LN(x))`, `logits = output_layer(h)` (no bias),
//!   `p_gen = sigmoid(p_gen_linear(h))`; the copy distribution is the last decoder layer's
//!   cross-attention probabilities of head 0 (the pointer–generator mixing is in
//!   [`crate::one2set::decode`]).
//!
//! Attention scales q·k by 1/sqrt(head_dim) (the authors scale q before the product; same values).
//!
//! ## Tensors (`model.safetensors`, f32, f16 or bf16)
//! Names are the authors' `state_dict` names, except that the shared embedding, which their
//! checkpoints store twice (`encoder.embed.weight`, `decoder.embed.weight`), is stored once:
//!
//! | name | shape |
//! |---|---|
//! | `embed.weight` | `[vocab, d]` |
//! | `encoder.input_fc.{weight,bias}`, `decoder.input_fc.{weight,bias}` | `[d, d]`, `[d]` |
//! | `encoder.layer_stacks.{i}.self_attn.{q,k,v,out}_proj.{weight,bias}` | `[d, d]`, `[d]` |
//! | `encoder.layer_stacks.{i}.{attn_layer_norm,ffn_layer_norm}.{weight,bias}` | `[d]` |
//! | `{encoder,decoder}.layer_stacks.{i}.ffn.0.{weight,bias}` | `[ffn, d]`, `[ffn]` |
//! | `{encoder,decoder}.layer_stacks.{i}.ffn.3.{weight,bias}` | `[d, ffn]`, `[d]` |
//! | `{encoder,decoder}.layer_norm.{weight,bias}` | `[d]` |
//! | `decoder.control_code.weight` | `[N, d]` |
//! | `decoder.layer_stacks.{i}.{self_attn,encoder_attn}.{q,k,v,out}_proj.{weight,bias}` | `[d, d]`, `[d]` |
//! | `decoder.layer_stacks.{i}.{self_attn_layer_norm,encoder_attn_layer_norm,final_layer_norm}.{weight,bias}` | `[d]` |
//! | `decoder.output_fc.{weight,bias}` | `[d, d]`, `[d]` |
//! | `decoder.output_layer.weight` | `[vocab, d]` |
//! | `decoder.p_gen_linear.{weight,bias}` | `[1, d]`, `[1]` |

use std::path::{Path, PathBuf};

use crate::backend::cpu::activation::residual_add_forward;
use crate::backend::cpu::bias::{bias_add_forward, bias_relu_forward};
use crate::backend::cpu::convert;
use crate::backend::cpu::dense::dense_forward;
use crate::backend::cpu::embedding::embedding_forward;
use crate::backend::cpu::layernorm::layernorm_forward;
use crate::backend::cpu::linear::{linear_forward_transposed, LinearScratch};
use crate::backend::cpu::segment_attention::{
    head0_offsets, segment_attention_forward, slot_attention_forward, Segment, SlotCache,
};
use crate::backend::cpu::simd;
use crate::backend::cpu::sinusoid::SinusoidTable;
use crate::backend::cpu::softmax_stats::SoftmaxStats;
use crate::error::{KpgError, Result};
use crate::model::one2set_config::One2SetConfig;
use crate::model::weights::{TensorRef, WeightFiles};

/// `nn.Linear` with a bias.
struct Linear {
    w: TensorRef, // [out, in]
    b: Vec<f32>,  // [out]
}

/// `nn.LayerNorm`.
struct Norm {
    weight: Vec<f32>, // [d]
    bias: Vec<f32>,   // [d]
}

struct Attention {
    q: Linear,   // [d, d]
    k: Linear,   // [d, d]
    v: Linear,   // [d, d]
    out: Linear, // [d, d]
}

struct EncoderLayer {
    attn_norm: Norm,
    self_attn: Attention,
    ffn_norm: Norm,
    ffn_in: Linear,  // [ffn, d]
    ffn_out: Linear, // [d, ffn]
}

struct DecoderLayer {
    self_attn_norm: Norm,
    self_attn: Attention,
    cross_norm: Norm,
    cross_attn: Attention,
    ffn_norm: Norm,
    ffn_in: Linear,  // [ffn, d]
    ffn_out: Linear, // [d, ffn]
}

pub struct One2Set {
    pub config: One2SetConfig,
    pub dir: PathBuf,
    files: WeightFiles,
    embed: TensorRef, // [vocab, d]
    encoder_input: Linear,
    encoder_layers: Vec<EncoderLayer>,
    encoder_norm: Norm,
    decoder_input: Linear,
    control_codes: Vec<f32>, // [N, d]
    decoder_layers: Vec<DecoderLayer>,
    decoder_norm: Norm,
    output_fc: Linear,       // [d, d]
    output_layer: TensorRef, // [vocab, d]
    p_gen_w: Vec<f32>,       // [d]
    p_gen_b: f32,
    positions: SinusoidTable, // [max(max_source_len + 1, max_keyphrase_len), d]
}

/// Every tensor of a One2Set checkpoint with its shape, in the order synth writes them.
pub fn tensor_specs(c: &One2SetConfig) -> Vec<(String, Vec<usize>)> {
    let (d, f) = (c.d_model, c.ffn_dim);
    let mut out = vec![("embed.weight".to_string(), vec![c.vocab_size, d])];
    let linear = |out: &mut Vec<(String, Vec<usize>)>, name: &str, o: usize, i: usize| {
        out.push((format!("{name}.weight"), vec![o, i]));
        out.push((format!("{name}.bias"), vec![o]));
    };
    let norm = |out: &mut Vec<(String, Vec<usize>)>, name: &str| {
        out.push((format!("{name}.weight"), vec![d]));
        out.push((format!("{name}.bias"), vec![d]));
    };
    linear(&mut out, "encoder.input_fc", d, d);
    for i in 0..c.encoder_layers {
        let p = format!("encoder.layer_stacks.{i}");
        for proj in ["q", "k", "v", "out"] {
            linear(&mut out, &format!("{p}.self_attn.{proj}_proj"), d, d);
        }
        norm(&mut out, &format!("{p}.attn_layer_norm"));
        norm(&mut out, &format!("{p}.ffn_layer_norm"));
        linear(&mut out, &format!("{p}.ffn.0"), f, d);
        linear(&mut out, &format!("{p}.ffn.3"), d, f);
    }
    norm(&mut out, "encoder.layer_norm");
    linear(&mut out, "decoder.input_fc", d, d);
    out.push((
        "decoder.control_code.weight".to_string(),
        vec![c.num_control_codes, d],
    ));
    for i in 0..c.decoder_layers {
        let p = format!("decoder.layer_stacks.{i}");
        for attn in ["self_attn", "encoder_attn"] {
            for proj in ["q", "k", "v", "out"] {
                linear(&mut out, &format!("{p}.{attn}.{proj}_proj"), d, d);
            }
        }
        norm(&mut out, &format!("{p}.self_attn_layer_norm"));
        norm(&mut out, &format!("{p}.encoder_attn_layer_norm"));
        norm(&mut out, &format!("{p}.final_layer_norm"));
        linear(&mut out, &format!("{p}.ffn.0"), f, d);
        linear(&mut out, &format!("{p}.ffn.3"), d, f);
    }
    norm(&mut out, "decoder.layer_norm");
    linear(&mut out, "decoder.output_fc", d, d);
    out.push((
        "decoder.output_layer.weight".to_string(),
        vec![c.vocab_size, d],
    ));
    linear(&mut out, "decoder.p_gen_linear", 1, d);
    out
}

/// Loads tensors by name with shape checks, small ones widened to f32.
struct Loader<'a> {
    files: &'a WeightFiles,
    d: usize,
}

impl Loader<'_> {
    fn vector(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self.files.get(name, shape)?;
        let mut out = vec![0f32; t.numel()];
        convert::to_f32(t.dtype, self.files.view(&t).bytes, &mut out);
        Ok(out)
    }

    fn linear(&self, name: &str, out: usize, inp: usize) -> Result<Linear> {
        Ok(Linear {
            w: self.files.get(&format!("{name}.weight"), &[out, inp])?,
            b: self.vector(&format!("{name}.bias"), &[out])?,
        })
    }

    fn norm(&self, name: &str) -> Result<Norm> {
        Ok(Norm {
            weight: self.vector(&format!("{name}.weight"), &[self.d])?,
            bias: self.vector(&format!("{name}.bias"), &[self.d])?,
        })
    }

    fn attention(&self, name: &str) -> Result<Attention> {
        let d = self.d;
        Ok(Attention {
            q: self.linear(&format!("{name}.q_proj"), d, d)?,
            k: self.linear(&format!("{name}.k_proj"), d, d)?,
            v: self.linear(&format!("{name}.v_proj"), d, d)?,
            out: self.linear(&format!("{name}.out_proj"), d, d)?,
        })
    }
}

/// Scratch buffers, grown on demand and reused across batches, so that a decode step does not
/// allocate once the largest batch has been seen.
#[derive(Default)]
pub struct One2SetWorkspace {
    // Encoder, over the packed source tokens of all documents of a batch.
    x: Vec<f32>,           // [tokens, d] residual stream (encoder), [rows, d] (decoder)
    h: Vec<f32>,           // [tokens, d] normed input of a sub-block
    q: Vec<f32>,           // [tokens, d]
    k: Vec<f32>,           // [tokens, d]
    v: Vec<f32>,           // [tokens, d]
    attn: Vec<f32>,        // [tokens, d]
    proj: Vec<f32>,        // [tokens, d]
    ffn: Vec<f32>,         // [tokens, ffn]
    pub enc_out: Vec<f32>, // [tokens, d] encoder output
    segments: Vec<Segment>,
    head0_at: Vec<usize>, // [segments]
    // Decoder.
    cross_k: Vec<Vec<f32>>, // [decoder_layers][tokens, d]
    cross_v: Vec<Vec<f32>>, // [decoder_layers][tokens, d]
    self_k: Vec<Vec<f32>>,  // [decoder_layers][slots, max_keyphrase_len, d]
    self_v: Vec<Vec<f32>>,  // [decoder_layers][slots, max_keyphrase_len, d]
    /// The batch's source layout: (first token, length) of every document.
    doc_spans: Vec<(usize, usize)>,
    num_slots: usize,
    /// Output features `output_fc(LN(x))` of the last step's rows.
    pub features: Vec<f32>, // [rows, d]
    /// Vocabulary logits of the last step's rows, transposed.
    pub logits_t: Vec<f32>, // [vocab, rows]
    /// Per row: the largest logit, its first index, and Σ exp(logit - max).
    pub logit_stats: SoftmaxStats,
    /// p_gen of the last step's rows.
    pub p_gen: Vec<f32>, // [rows]
    /// Head-0 cross-attention of the last decoder layer, per row over its document's source.
    pub copy_attn: Vec<f32>, // [Σ rows' source lengths]
    /// Where each row's copy attention starts in `copy_attn`, and its length.
    pub copy_at: Vec<(usize, usize)>, // [rows]
    linear: LinearScratch,
}

fn grow(buf: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if buf.len() < n {
        buf.resize(n, 0.0);
    }
    &mut buf[..n]
}

impl One2SetWorkspace {
    /// The (first token, length) of every document of the encoded batch.
    pub fn doc_spans(&self) -> &[(usize, usize)] {
        &self.doc_spans
    }
}

impl One2Set {
    /// Loads `config.json` and the memory-mapped `model.safetensors` of a generator directory.
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(KpgError::MissingFile {
                path: dir.to_path_buf(),
            });
        }
        let config = One2SetConfig::from_dir(dir)?;
        let files = WeightFiles::open(dir)?;
        let c = &config;
        let (d, f) = (c.d_model, c.ffn_dim);
        let l = Loader { files: &files, d };
        files.check_finite()?;
        files.check_layer_count(
            "encoder_layers",
            c.encoder_layers,
            &format!(
                "encoder.layer_stacks.{}.ffn.3.weight",
                c.encoder_layers.saturating_sub(1)
            ),
        )?;
        files.check_layer_count(
            "decoder_layers",
            c.decoder_layers,
            &format!(
                "decoder.layer_stacks.{}.ffn.3.weight",
                c.decoder_layers.saturating_sub(1)
            ),
        )?;
        let mut encoder_layers = Vec::with_capacity(c.encoder_layers);
        for i in 0..c.encoder_layers {
            let p = format!("encoder.layer_stacks.{i}");
            encoder_layers.push(EncoderLayer {
                attn_norm: l.norm(&format!("{p}.attn_layer_norm"))?,
                self_attn: l.attention(&format!("{p}.self_attn"))?,
                ffn_norm: l.norm(&format!("{p}.ffn_layer_norm"))?,
                ffn_in: l.linear(&format!("{p}.ffn.0"), f, d)?,
                ffn_out: l.linear(&format!("{p}.ffn.3"), d, f)?,
            });
        }
        let mut decoder_layers = Vec::with_capacity(c.decoder_layers);
        for i in 0..c.decoder_layers {
            let p = format!("decoder.layer_stacks.{i}");
            decoder_layers.push(DecoderLayer {
                self_attn_norm: l.norm(&format!("{p}.self_attn_layer_norm"))?,
                self_attn: l.attention(&format!("{p}.self_attn"))?,
                cross_norm: l.norm(&format!("{p}.encoder_attn_layer_norm"))?,
                cross_attn: l.attention(&format!("{p}.encoder_attn"))?,
                ffn_norm: l.norm(&format!("{p}.final_layer_norm"))?,
                ffn_in: l.linear(&format!("{p}.ffn.0"), f, d)?,
                ffn_out: l.linear(&format!("{p}.ffn.3"), d, f)?,
            });
        }
        let p_gen = l.linear("decoder.p_gen_linear", 1, d)?;
        let p_gen_w = l.vector("decoder.p_gen_linear.weight", &[1, d])?;
        let model = One2Set {
            embed: files.get("embed.weight", &[c.vocab_size, d])?,
            encoder_input: l.linear("encoder.input_fc", d, d)?,
            encoder_layers,
            encoder_norm: l.norm("encoder.layer_norm")?,
            decoder_input: l.linear("decoder.input_fc", d, d)?,
            control_codes: l.vector("decoder.control_code.weight", &[c.num_control_codes, d])?,
            decoder_layers,
            decoder_norm: l.norm("decoder.layer_norm")?,
            output_fc: l.linear("decoder.output_fc", d, d)?,
            output_layer: files.get("decoder.output_layer.weight", &[c.vocab_size, d])?,
            p_gen_w,
            p_gen_b: p_gen.b[0],
            positions: SinusoidTable::new((c.max_source_len + 1).max(c.max_keyphrase_len), d),
            config,
            dir: dir.to_path_buf(),
            files,
        };
        Ok(model)
    }

    /// The memory-mapped checkpoint (what the CUDA generator uploads from).
    pub fn weight_files(&self) -> &WeightFiles {
        &self.files
    }

    fn linear(&self, y: &mut [f32], x: &[f32], lin: &Linear, rows: usize, s: &mut LinearScratch) {
        dense_forward(y, x, self.files.view(&lin.w), rows, s);
        bias_add_forward(y, &lin.b);
    }

    fn eps(&self) -> f32 {
        self.config.layer_norm_eps as f32
    }

    /// Runs the encoder over a batch of documents, packed one after another without padding
    /// (`ids` holds in-vocabulary ids, each document at most `max_source_len` tokens), and prepares
    /// every decoder layer's cross-attention keys and values and `num_slots = docs · N` slots.
    pub fn encode_forward(
        &self,
        ws: &mut One2SetWorkspace,
        ids: &[u32],        // [tokens]
        doc_lens: &[usize], // [docs]
    ) -> Result<()> {
        let c = &self.config;
        let d = c.d_model;
        let tokens = ids.len();
        if doc_lens.iter().sum::<usize>() != tokens {
            return Err(KpgError::Shape {
                op: "encode_forward",
                expected: format!("{tokens} tokens in all documents"),
                got: format!("{}", doc_lens.iter().sum::<usize>()),
            });
        }
        if let Some(&n) = doc_lens.iter().find(|&&n| n > c.max_source_len || n == 0) {
            return Err(KpgError::Shape {
                op: "encode_forward",
                expected: format!("documents of 1..={} tokens", c.max_source_len),
                got: format!("{n}"),
            });
        }
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= c.vocab_size) {
            return Err(KpgError::TokenOutOfRange {
                id,
                vocab_size: c.vocab_size,
            });
        }
        ws.doc_spans.clear();
        ws.segments.clear();
        let mut at = 0;
        for &n in doc_lens {
            ws.doc_spans.push((at, n));
            ws.segments.push(Segment {
                q_start: at,
                q_len: n,
                k_start: at,
                k_len: n,
            });
            at += n;
        }

        // x = input_fc(sqrt(d)·embed(ids) + pos), positions 1..=len in every document.
        let scale = (d as f32).sqrt();
        let e = grow(&mut ws.h, tokens * d);
        embedding_forward(e, ids, self.files.view(&self.embed));
        for &(first, n) in &ws.doc_spans {
            for i in 0..n {
                let row = &mut e[(first + i) * d..(first + i + 1) * d];
                for (v, p) in row.iter_mut().zip(self.positions.row(i + 1)) {
                    *v = *v * scale + p;
                }
            }
        }
        let x = grow(&mut ws.x, tokens * d);
        self.linear(
            x,
            &ws.h[..tokens * d],
            &self.encoder_input,
            tokens,
            &mut ws.linear,
        );

        for layer in &self.encoder_layers {
            let x = &mut ws.x[..tokens * d];
            let h = grow(&mut ws.h, tokens * d);
            layernorm_forward(
                h,
                x,
                &layer.attn_norm.weight,
                &layer.attn_norm.bias,
                self.eps(),
            );
            let (a, s) = (&layer.self_attn, &mut ws.linear);
            self.linear(grow(&mut ws.q, tokens * d), h, &a.q, tokens, s);
            self.linear(grow(&mut ws.k, tokens * d), h, &a.k, tokens, s);
            self.linear(grow(&mut ws.v, tokens * d), h, &a.v, tokens, s);
            let attn = grow(&mut ws.attn, tokens * d);
            segment_attention_forward(
                attn,
                None,
                &ws.q[..tokens * d],
                &ws.k[..tokens * d],
                &ws.v[..tokens * d],
                &ws.segments,
                c.num_heads,
                c.head_dim(),
                &[],
            );
            let proj = grow(&mut ws.proj, tokens * d);
            self.linear(proj, attn, &a.out, tokens, s);
            residual_add_forward(x, proj);
            self.ffn_forward(ws, tokens, &layer.ffn_norm, &layer.ffn_in, &layer.ffn_out);
        }
        let enc = grow(&mut ws.enc_out, tokens * d);
        let n = &self.encoder_norm;
        layernorm_forward(enc, &ws.x[..tokens * d], &n.weight, &n.bias, self.eps());

        // Cross-attention keys and values, once per batch for all decoding steps.
        ws.cross_k.resize_with(c.decoder_layers, Vec::new);
        ws.cross_v.resize_with(c.decoder_layers, Vec::new);
        for (l, layer) in self.decoder_layers.iter().enumerate() {
            let a = &layer.cross_attn;
            let enc = &ws.enc_out[..tokens * d];
            self.linear(
                grow(&mut ws.cross_k[l], tokens * d),
                enc,
                &a.k,
                tokens,
                &mut ws.linear,
            );
            self.linear(
                grow(&mut ws.cross_v[l], tokens * d),
                enc,
                &a.v,
                tokens,
                &mut ws.linear,
            );
        }

        // Per-slot self-attention caches; stale values are never read (a slot at step t reads
        // only its keys 0..=t, all written by then).
        ws.num_slots = doc_lens.len() * c.num_control_codes;
        let per_layer = ws.num_slots * c.max_keyphrase_len * d;
        ws.self_k.resize_with(c.decoder_layers, Vec::new);
        ws.self_v.resize_with(c.decoder_layers, Vec::new);
        for l in 0..c.decoder_layers {
            grow(&mut ws.self_k[l], per_layer);
            grow(&mut ws.self_v[l], per_layer);
        }
        Ok(())
    }

    /// x += ffn_out(relu(ffn_in(LN(x)))) over the first `rows` rows of the residual stream.
    fn ffn_forward(
        &self,
        ws: &mut One2SetWorkspace,
        rows: usize,
        norm: &Norm,
        ffn_in: &Linear,
        ffn_out: &Linear,
    ) {
        let (d, f) = (self.config.d_model, self.config.ffn_dim);
        let x = &mut ws.x[..rows * d];
        let h = grow(&mut ws.h, rows * d);
        layernorm_forward(h, x, &norm.weight, &norm.bias, self.eps());
        let mid = grow(&mut ws.ffn, rows * f);
        dense_forward(mid, h, self.files.view(&ffn_in.w), rows, &mut ws.linear);
        bias_relu_forward(mid, &ffn_in.b);
        let proj = grow(&mut ws.proj, rows * d);
        self.linear(proj, mid, ffn_out, rows, &mut ws.linear);
        residual_add_forward(x, proj);
    }

    /// One greedy step of the listed slots after [`Self::encode_forward`]: slot `slots[r]`
    /// (`document · N + code`, ascending) reads `tokens[r]` (an in-vocabulary id) at position
    /// `step`. Leaves in the workspace each row's logits (transposed) with their softmax
    /// statistics, p_gen and copy attention.
    pub fn decode_step_forward(
        &self,
        ws: &mut One2SetWorkspace,
        step: usize,
        slots: &[u32],  // [rows]
        tokens: &[u32], // [rows]
    ) -> Result<()> {
        let c = &self.config;
        let (d, n_codes) = (c.d_model, c.num_control_codes);
        let rows = slots.len();
        if step >= c.max_keyphrase_len {
            return Err(KpgError::Shape {
                op: "decode_step_forward",
                expected: format!("a step below max_keyphrase_len = {}", c.max_keyphrase_len),
                got: format!("step {step}"),
            });
        }
        if tokens.len() != rows
            || slots.windows(2).any(|w| w[0] >= w[1])
            || slots.last().is_some_and(|&s| s as usize >= ws.num_slots)
        {
            return Err(KpgError::Shape {
                op: "decode_step_forward",
                expected: format!("ascending slots below {} with one token each", ws.num_slots),
                got: format!("{rows} slots, {} tokens", tokens.len()),
            });
        }
        if let Some(&id) = tokens.iter().find(|&&id| id as usize >= c.vocab_size) {
            return Err(KpgError::TokenOutOfRange {
                id,
                vocab_size: c.vocab_size,
            });
        }

        // Cross-attention segments: the rows of one document are contiguous.
        ws.segments.clear();
        for (r, &slot) in slots.iter().enumerate() {
            let doc = slot as usize / n_codes;
            let (k_start, k_len) = ws.doc_spans[doc];
            match ws.segments.last_mut() {
                Some(s) if s.k_start == k_start && s.q_start + s.q_len == r => s.q_len += 1,
                _ => ws.segments.push(Segment {
                    q_start: r,
                    q_len: 1,
                    k_start,
                    k_len,
                }),
            }
        }

        // x = input_fc(sqrt(d)·embed(token)) + pos[step] + control_code[code].
        let e = grow(&mut ws.h, rows * d);
        embedding_forward(e, tokens, self.files.view(&self.embed));
        let scale = (d as f32).sqrt();
        e.iter_mut().for_each(|v| *v *= scale);
        let x = grow(&mut ws.x, rows * d);
        self.linear(
            x,
            &ws.h[..rows * d],
            &self.decoder_input,
            rows,
            &mut ws.linear,
        );
        let pos = self.positions.row(step);
        for (row, &slot) in x.chunks_mut(d).zip(slots) {
            let code = slot as usize % n_codes;
            let cc = &self.control_codes[code * d..(code + 1) * d];
            for ((v, p), k) in row.iter_mut().zip(pos).zip(cc) {
                *v += p + k;
            }
        }

        let last = self.decoder_layers.len().saturating_sub(1);
        for (l, layer) in self.decoder_layers.iter().enumerate() {
            // Self-attention over the slot's own tokens 0..=step.
            let x = &mut ws.x[..rows * d];
            let h = grow(&mut ws.h, rows * d);
            let n = &layer.self_attn_norm;
            layernorm_forward(h, x, &n.weight, &n.bias, self.eps());
            let (a, s) = (&layer.self_attn, &mut ws.linear);
            self.linear(grow(&mut ws.q, rows * d), h, &a.q, rows, s);
            self.linear(grow(&mut ws.k, rows * d), h, &a.k, rows, s);
            self.linear(grow(&mut ws.v, rows * d), h, &a.v, rows, s);
            let max_len = c.max_keyphrase_len;
            for (r, &slot) in slots.iter().enumerate() {
                let at = (slot as usize * max_len + step) * d;
                ws.self_k[l][at..at + d].copy_from_slice(&ws.k[r * d..(r + 1) * d]);
                ws.self_v[l][at..at + d].copy_from_slice(&ws.v[r * d..(r + 1) * d]);
            }
            let attn = grow(&mut ws.attn, rows * d);
            let cache = SlotCache {
                k: &ws.self_k[l][..ws.num_slots * max_len * d],
                v: &ws.self_v[l][..ws.num_slots * max_len * d],
                max_len,
            };
            slot_attention_forward(attn, &ws.q[..rows * d], cache, slots, step + 1, c.num_heads);
            let proj = grow(&mut ws.proj, rows * d);
            self.linear(proj, attn, &a.out, rows, s);
            residual_add_forward(x, proj);

            // Cross-attention over the document's encoder output.
            let h = grow(&mut ws.h, rows * d);
            let n = &layer.cross_norm;
            layernorm_forward(h, x, &n.weight, &n.bias, self.eps());
            let a = &layer.cross_attn;
            self.linear(grow(&mut ws.q, rows * d), h, &a.q, rows, s);
            let copy_len = head0_offsets(&ws.segments, &mut ws.head0_at);
            let head0 = if l == last {
                Some(grow(&mut ws.copy_attn, copy_len))
            } else {
                None
            };
            let tokens_all = ws.enc_out.len().min(ws.cross_k[l].len());
            segment_attention_forward(
                grow(&mut ws.attn, rows * d),
                head0,
                &ws.q[..rows * d],
                &ws.cross_k[l][..tokens_all],
                &ws.cross_v[l][..tokens_all],
                &ws.segments,
                c.num_heads,
                c.head_dim(),
                &ws.head0_at,
            );
            let proj = grow(&mut ws.proj, rows * d);
            self.linear(proj, &ws.attn[..rows * d], &a.out, rows, s);
            residual_add_forward(x, proj);

            self.ffn_forward(ws, rows, &layer.ffn_norm, &layer.ffn_in, &layer.ffn_out);
        }

        // Output: features, vocabulary logits, p_gen.
        let h = grow(&mut ws.h, rows * d);
        let n = &self.decoder_norm;
        layernorm_forward(h, &ws.x[..rows * d], &n.weight, &n.bias, self.eps());
        let features = grow(&mut ws.features, rows * d);
        self.linear(features, h, &self.output_fc, rows, &mut ws.linear);
        let logits_t = grow(&mut ws.logits_t, rows * c.vocab_size);
        linear_forward_transposed(
            logits_t,
            features,
            self.files.view(&self.output_layer),
            rows,
            &mut ws.linear,
        );
        ws.logit_stats.compute(logits_t, rows);
        ws.p_gen.clear();
        ws.p_gen.extend(features.chunks(d).map(|f| {
            let z = simd::dot(f, &self.p_gen_w) + self.p_gen_b;
            1.0 / (1.0 + (-z).exp())
        }));
        ws.copy_at.clear();
        for (s, seg) in ws.segments.iter().enumerate() {
            for i in 0..seg.q_len {
                ws.copy_at.push((ws.head0_at[s] + i * seg.k_len, seg.k_len));
            }
        }
        Ok(())
    }
}
