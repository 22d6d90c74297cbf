//! The LLaMA forward pass on the GPU (feature `cuda`): the same computation as `model::llama`,
//! with weights in bf16 on the device, an f32 residual stream, cuBLAS for the dense products and
//! kpg's kernels for the rest. `Llama::forward` validates the batch, reserves cache blocks and
//! builds the token metadata, then hands the layers to [`CudaLlama::forward`].
//!
//! Two fusions against the CPU code, each held to the twins by `kpg selftest`: the Q, K and V
//! projections are one GEMM over weights concatenated at load (and gate/up likewise), and RoPE
//! writes the rotated keys and the values straight into their cache slots.

use std::sync::Arc;

use cudarc::driver::CudaSlice;
use half::bf16;

use crate::backend::cuda::attention::{AttentionShape, PagedAttention};
use crate::backend::cuda::convert::upload_bf16_into;
use crate::backend::cuda::llama_ops::{self, QkvShape};
use crate::backend::cuda::{gemm, CudaDevice, Scratch};
use crate::error::Result;
use crate::kv_cache::PagedKvCache;
use crate::model::config::LlamaConfig;
use crate::model::lora::LoraAdapter;
use crate::model::weights::{DType, TensorRef, WeightFiles, WeightView};

struct CudaLayer {
    input_norm: CudaSlice<f32>, // [hidden]
    qkv_proj: CudaSlice<bf16>,  // [(num_heads + 2 num_kv_heads) * head_dim, hidden]
    o_proj: CudaSlice<bf16>,    // [hidden, num_heads * head_dim]
    post_norm: CudaSlice<f32>,  // [hidden]
    gate_up: CudaSlice<bf16>,   // [2 * intermediate, hidden]
    down_proj: CudaSlice<bf16>, // [hidden, intermediate]
}

pub struct CudaLlama {
    dev: Arc<CudaDevice>,
    layers: Vec<CudaLayer>,
    embed: CudaSlice<bf16>,           // [vocab, hidden]
    lm_head: Option<CudaSlice<bf16>>, // [vocab, hidden]; None when tied to `embed`
    final_norm: CudaSlice<f32>,       // [hidden]
    inv_freq: CudaSlice<f32>,         // [head_dim / 2]
}

/// Device buffers of one batch shape, grown on demand (no cudaMalloc in steady state).
pub struct CudaLlamaWorkspace {
    x: Scratch<f32>,          // [tokens, hidden] residual stream
    h: Scratch<bf16>,         // [tokens, hidden] normed input of a sub-block
    qkv: Scratch<bf16>,       // [tokens, (num_heads + 2 num_kv_heads) * head_dim]
    q: Scratch<bf16>,         // [tokens, num_heads * head_dim] rotated queries
    attn: Scratch<bf16>,      // [tokens, num_heads * head_dim]
    proj: Scratch<bf16>,      // [tokens, hidden]
    gate_up: Scratch<bf16>,   // [tokens, 2 * intermediate]
    act: Scratch<bf16>,       // [tokens, intermediate]
    last: Scratch<f32>,       // [rows, hidden] residual rows whose logits are wanted
    logits: Scratch<f32>,     // [rows, vocab]
    ids: Scratch<u32>,        // [tokens]
    token_seq: Scratch<u32>,  // [tokens]
    token_pos: Scratch<u32>,  // [tokens]
    slots: Scratch<i64>,      // [tokens]
    tables: Scratch<u32>,     // [seqs, max_blocks_per_seq]
    label_rows: Scratch<u32>, // [labels] token index of each wanted logit
    label_ids: Scratch<u32>,  // [labels]
    attention: PagedAttention,
    host_tables: Vec<u32>, // [seqs, max_blocks_per_seq]
    host_slots: Vec<i64>,  // [tokens]
    host_rows: Vec<u32>,   // [labels]
    host_ids: Vec<u32>,    // [labels]
}

impl Default for CudaLlamaWorkspace {
    fn default() -> Self {
        CudaLlamaWorkspace {
            x: Scratch::new("the residual stream"),
            h: Scratch::new("normed activations"),
            qkv: Scratch::new("QKV projections"),
            q: Scratch::new("rotated queries"),
            attn: Scratch::new("attention output"),
            proj: Scratch::new("block outputs"),
            gate_up: Scratch::new("gate/up projections"),
            act: Scratch::new("SwiGLU activations"),
            last: Scratch::new("last hidden rows"),
            logits: Scratch::new("logits"),
            ids: Scratch::new("token ids"),
            token_seq: Scratch::new("token sequence indices"),
            token_pos: Scratch::new("token positions"),
            slots: Scratch::new("the slot mapping"),
            tables: Scratch::new("block tables"),
            label_rows: Scratch::new("label rows"),
            label_ids: Scratch::new("label ids"),
            attention: PagedAttention::new(),
            host_tables: Vec::new(),
            host_slots: Vec::new(),
            host_rows: Vec::new(),
            host_ids: Vec::new(),
        }
    }
}

/// What the host side of `Llama::forward` hands over: the batch's token metadata.
pub struct ForwardBatch<'a> {
    pub ids: &'a [u32],                // [tokens]
    pub token_seq: &'a [u32],          // [tokens]
    pub token_pos: &'a [u32],          // [tokens]
    pub slot_mapping: &'a [usize],     // [tokens]
    pub block_tables: &'a [&'a [u32]], // [seqs][blocks]
}

/// Which logits to compute, resolved to token rows by the host side.
pub enum CudaLogits<'a> {
    None,
    /// Full-vocabulary logits of these token rows.
    Rows(&'a [usize]),
    /// `(token row, vocabulary id)` pairs: the label head.
    Labels(&'a [(usize, u32)]),
}

fn upload_norm(dev: &CudaDevice, host: &[f32], name: &str) -> Result<CudaSlice<f32>> {
    dev.upload(host, &format!("norm weight `{name}`"))
}

/// Uploads tensors stacked along their rows into one device matrix (fused projections), each
/// with its LoRA update merged in (in f32 on the host, then rounded to bf16 once) when the
/// adapter has one.
fn upload_stacked(
    dev: &CudaDevice,
    files: &WeightFiles,
    adapter: Option<&LoraAdapter>,
    parts: &[&TensorRef],
) -> Result<CudaSlice<bf16>> {
    let total: usize = parts.iter().map(|t| t.numel()).sum();
    let names: Vec<&str> = parts.iter().map(|t| t.name.as_str()).collect();
    let mut out = dev.alloc::<bf16>(total, &names.join(" + "))?;
    let mut at = 0;
    for t in parts {
        let n = t.numel();
        let dst = &mut out.slice_mut(at..at + n);
        match adapter.and_then(|a| a.update(&t.name)) {
            None => upload_bf16_into(dev, files.view(t), dst, &t.name)?,
            Some(update) => {
                let view = files.view(t);
                let mut merged = vec![0f32; n];
                crate::backend::cpu::convert::to_f32(view.dtype, view.bytes, &mut merged);
                for (w, d) in merged.iter_mut().zip(update.delta()) {
                    *w += d;
                }
                let merged_view = WeightView {
                    dtype: DType::F32,
                    shape: &t.shape,
                    bytes: bytemuck::cast_slice(&merged),
                };
                upload_bf16_into(dev, merged_view, dst, &t.name)?
            }
        }
        at += n;
    }
    Ok(out)
}

/// The CPU model's weights and its LoRA adapter, if any (merged into the bf16 weights at upload).
#[derive(Clone, Copy)]
pub struct HostWeights<'a> {
    pub files: &'a WeightFiles,
    pub adapter: Option<&'a LoraAdapter>,
}

/// The CPU model's pieces that the GPU model is built from (`Llama::load` has read and checked
/// every tensor's shape already).
pub struct HostLayer<'a> {
    pub input_norm: &'a [f32],
    pub q_proj: &'a TensorRef,
    pub k_proj: &'a TensorRef,
    pub v_proj: &'a TensorRef,
    pub o_proj: &'a TensorRef,
    pub post_norm: &'a [f32],
    pub gate_proj: &'a TensorRef,
    pub up_proj: &'a TensorRef,
    pub down_proj: &'a TensorRef,
}

impl CudaLlama {
    /// Uploads the weights tensor by tensor from the memory map (never a host copy of the whole
    /// model) and fuses the QKV and gate/up projections.
    pub fn upload(
        dev: &Arc<CudaDevice>,
        weights: HostWeights<'_>,
        layers: &[HostLayer<'_>],
        embed: &TensorRef,
        lm_head: Option<&TensorRef>,
        final_norm: &[f32],
        inv_freq: &[f32],
    ) -> Result<Self> {
        let HostWeights { files, adapter } = weights;
        let mut out = Vec::with_capacity(layers.len());
        for l in layers {
            out.push(CudaLayer {
                input_norm: upload_norm(dev, l.input_norm, "input_layernorm")?,
                qkv_proj: upload_stacked(dev, files, adapter, &[l.q_proj, l.k_proj, l.v_proj])?,
                o_proj: upload_stacked(dev, files, adapter, &[l.o_proj])?,
                post_norm: upload_norm(dev, l.post_norm, "post_attention_layernorm")?,
                gate_up: upload_stacked(dev, files, adapter, &[l.gate_proj, l.up_proj])?,
                down_proj: upload_stacked(dev, files, adapter, &[l.down_proj])?,
            });
        }
        Ok(CudaLlama {
            dev: dev.clone(),
            layers: out,
            embed: upload_stacked(dev, files, None, &[embed])?,
            lm_head: lm_head
                .map(|t| upload_stacked(dev, files, None, &[t]))
                .transpose()?,
            final_norm: upload_norm(dev, final_norm, "model.norm")?,
            inv_freq: dev.upload(inv_freq, "RoPE frequencies")?,
        })
    }

    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.dev
    }

    /// Runs the layers over a batch whose cache blocks are reserved, and writes the requested
    /// logits into `logits_out` (`[rows, vocab]`, or one per label pair).
    pub fn forward(
        &self,
        c: &LlamaConfig,
        cache: &mut PagedKvCache,
        ws: &mut CudaLlamaWorkspace,
        batch: &ForwardBatch<'_>,
        which: CudaLogits<'_>,
        logits_out: &mut Vec<f32>,
    ) -> Result<()> {
        let dev = &*self.dev;
        let tokens = batch.ids.len();
        let (hidden, inter) = (c.hidden_size, c.intermediate_size);
        let (q_dim, kv_dim) = (c.q_dim(), c.kv_dim());
        let qkv_dim = q_dim + 2 * kv_dim;
        let eps = c.rms_norm_eps;
        let shape = QkvShape {
            num_heads: c.num_attention_heads,
            num_kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
        };

        // Token metadata to the device.
        let max_blocks = batch
            .block_tables
            .iter()
            .map(|t| t.len())
            .max()
            .unwrap_or(0)
            .max(1);
        ws.host_tables.clear();
        for t in batch.block_tables {
            ws.host_tables.extend_from_slice(t);
            ws.host_tables
                .extend(std::iter::repeat_n(0, max_blocks - t.len()));
        }
        ws.host_slots.clear();
        ws.host_slots
            .extend(batch.slot_mapping.iter().map(|&s| s as i64));
        let ids = ws.ids.get(dev, tokens)?;
        dev.upload_into(batch.ids, ids, "token ids")?;
        let seq = ws.token_seq.get(dev, tokens)?;
        dev.upload_into(batch.token_seq, seq, "token sequence indices")?;
        let pos = ws.token_pos.get(dev, tokens)?;
        dev.upload_into(batch.token_pos, pos, "token positions")?;
        let slots = ws.slots.get(dev, tokens)?;
        dev.upload_into(&ws.host_slots, slots, "the slot mapping")?;
        let tables = ws.tables.get(dev, ws.host_tables.len())?;
        dev.upload_into(&ws.host_tables, tables, "block tables")?;
        let attn_shape = AttentionShape {
            num_tokens: tokens,
            num_seqs: batch.block_tables.len(),
            num_heads: c.num_attention_heads,
            num_kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
            block_size: cache.block_size(),
            max_blocks_per_seq: max_blocks,
            max_context: batch
                .token_pos
                .iter()
                .map(|&p| p as usize + 1)
                .max()
                .unwrap_or(0),
        };

        ws.x.get(dev, tokens * hidden)?;
        ws.h.get(dev, tokens * hidden)?;
        ws.qkv.get(dev, tokens * qkv_dim)?;
        ws.q.get(dev, tokens * q_dim)?;
        ws.attn.get(dev, tokens * q_dim)?;
        ws.proj.get(dev, tokens * hidden)?;
        ws.gate_up.get(dev, tokens * 2 * inter)?;
        ws.act.get(dev, tokens * inter)?;
        let x = ws.x.current_mut();
        llama_ops::embedding(
            dev,
            &mut x.slice_mut(..tokens * hidden),
            &ws.ids.view(tokens),
            &self.embed.as_view(),
            tokens,
            hidden,
        )?;
        let storage = cache
            .device_storage()
            .expect("a CUDA model's cache lives on the GPU (Llama::new_cache)");
        for (l, layer) in self.layers.iter().enumerate() {
            let h = ws.h.current_mut();
            llama_ops::rmsnorm(
                dev,
                &mut h.slice_mut(..tokens * hidden),
                &ws.x.view(tokens * hidden),
                &layer.input_norm.as_view(),
                tokens,
                eps,
            )?;
            gemm::linear_bf16(
                dev,
                &mut ws.qkv.current_mut().slice_mut(..tokens * qkv_dim),
                &ws.h.view(tokens * hidden),
                &layer.qkv_proj,
                (tokens, qkv_dim, hidden),
                0.0,
            )?;
            llama_ops::rope_write_kv(
                dev,
                &mut ws.q.current_mut().slice_mut(..tokens * q_dim),
                &mut storage.k[l].as_view_mut(),
                &mut storage.v[l].as_view_mut(),
                &ws.qkv.view(tokens * qkv_dim),
                &ws.token_pos.view(tokens),
                &ws.slots.view(tokens),
                &self.inv_freq.as_view(),
                shape,
                tokens,
            )?;
            ws.attention.forward(
                dev,
                &mut ws.attn.current_mut().slice_mut(..tokens * q_dim),
                &ws.q.view(tokens * q_dim),
                &storage.k[l].as_view(),
                &storage.v[l].as_view(),
                &ws.token_seq.view(tokens),
                &ws.token_pos.view(tokens),
                &ws.tables.view(ws.host_tables.len()),
                &attn_shape,
            )?;
            gemm::linear_bf16(
                dev,
                &mut ws.proj.current_mut().slice_mut(..tokens * hidden),
                &ws.attn.view(tokens * q_dim),
                &layer.o_proj,
                (tokens, hidden, q_dim),
                0.0,
            )?;
            llama_ops::residual_rmsnorm(
                dev,
                &mut ws.h.current_mut().slice_mut(..tokens * hidden),
                &mut ws.x.current_mut().slice_mut(..tokens * hidden),
                &ws.proj.view(tokens * hidden),
                &layer.post_norm.as_view(),
                tokens,
                eps,
            )?;
            gemm::linear_bf16(
                dev,
                &mut ws.gate_up.current_mut().slice_mut(..tokens * 2 * inter),
                &ws.h.view(tokens * hidden),
                &layer.gate_up,
                (tokens, 2 * inter, hidden),
                0.0,
            )?;
            llama_ops::silu_mul(
                dev,
                &mut ws.act.current_mut().slice_mut(..tokens * inter),
                &ws.gate_up.view(tokens * 2 * inter),
                tokens,
                inter,
            )?;
            gemm::linear_bf16(
                dev,
                &mut ws.proj.current_mut().slice_mut(..tokens * hidden),
                &ws.act.view(tokens * inter),
                &layer.down_proj,
                (tokens, hidden, inter),
                0.0,
            )?;
            llama_ops::residual_add(
                dev,
                &mut ws.x.current_mut().slice_mut(..tokens * hidden),
                &ws.proj.view(tokens * hidden),
                tokens * hidden,
            )?;
        }
        let lm_head = self.lm_head.as_ref().unwrap_or(&self.embed);
        match which {
            CudaLogits::None => {
                logits_out.clear();
                dev.synchronize("the forward pass")
            }
            CudaLogits::Labels(pairs) => {
                ws.host_rows.clear();
                ws.host_ids.clear();
                for &(row, id) in pairs {
                    ws.host_rows.push(row as u32);
                    ws.host_ids.push(id);
                }
                let n = pairs.len();
                let rows = ws.label_rows.get(dev, n)?;
                dev.upload_into(&ws.host_rows, rows, "label rows")?;
                let ids = ws.label_ids.get(dev, n)?;
                dev.upload_into(&ws.host_ids, ids, "label ids")?;
                let out = ws.logits.get(dev, n)?;
                llama_ops::label_head(
                    dev,
                    &mut out.slice_mut(..n),
                    &ws.x.view(tokens * hidden),
                    &ws.label_rows.view(n),
                    &ws.label_ids.view(n),
                    &self.final_norm.as_view(),
                    &lm_head.as_view(),
                    n,
                    eps,
                )?;
                logits_out.resize(n, 0.0);
                dev.download_into(ws.logits.current_mut(), logits_out, "label logits")
            }
            CudaLogits::Rows(rows) => {
                let n = rows.len();
                let vocab = c.vocab_size;
                let last = ws.last.get(dev, n * hidden)?;
                let x = ws.x.current_mut();
                for (i, &r) in rows.iter().enumerate() {
                    dev.stream()
                        .memcpy_dtod(
                            &x.slice(r * hidden..(r + 1) * hidden),
                            &mut last.slice_mut(i * hidden..(i + 1) * hidden),
                        )
                        .map_err(|e| crate::error::KpgError::Cuda {
                            during: "gathering the rows whose logits are wanted".into(),
                            reason: format!("{e:?}"),
                        })?;
                }
                llama_ops::rmsnorm(
                    dev,
                    &mut ws.h.current_mut().slice_mut(..n * hidden),
                    &ws.last.view(n * hidden),
                    &self.final_norm.as_view(),
                    n,
                    eps,
                )?;
                let logits = ws.logits.get(dev, n * vocab)?;
                gemm::linear_bf16_f32out(
                    dev,
                    &mut logits.slice_mut(..n * vocab),
                    &ws.h.view(n * hidden),
                    &lm_head.as_view(),
                    (n, vocab, hidden),
                )?;
                logits_out.resize(n * vocab, 0.0);
                dev.download_into(ws.logits.current_mut(), logits_out, "logits")
            }
        }
    }
}
