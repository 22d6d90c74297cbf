//! The LLaMA-architecture causal LM (transformers' `LlamaForCausalLM`), forward only, over the
//! paged KV cache. Pre-norm blocks: x += o_proj(attn(rope(q), rope(k), v)) of rmsnorm(x), then
//! x += down(silu(gate) · up) of rmsnorm(x); a final RMSNorm and the LM head.
//!
//! A forward call takes a batch of sequences, each contributing a chunk of new tokens of any
//! length (a prefill chunk, or one token when decoding), and appends them to the cache.
//!
//! - [`cuda`]: the same forward on the GPU (bf16 weights, the paged cache on the device), built
//!   with the `cuda` feature; the device is the one `--device cuda --gpu N` names, as for every
//!   model;
//! - [`generate`]: teacher-forced scoring and greedy decoding over the cache.

#[cfg(feature = "cuda")]
pub mod cuda;
pub mod generate;

use std::path::{Path, PathBuf};

use crate::backend::cpu::activation::{residual_add_forward, silu_mul_forward};
use crate::backend::cpu::attention::paged_attention_forward;
use crate::backend::cpu::embedding::embedding_forward;
use crate::backend::cpu::linear::{linear_forward, linear_forward_many, LinearScratch};
use crate::backend::cpu::norm::rmsnorm_forward;
use crate::backend::cpu::rope::RopeTable;
use crate::backend::cpu::{convert, simd};
use crate::backend::paged::CacheShape;
use crate::backend::paged::TokenContext;
use crate::backend::DeviceKind;
use crate::error::{KpgError, Result};
use crate::kv_cache::{BlockTable, CacheCapacity, PagedKvCache};
use crate::model::config::LlamaConfig;
use crate::model::lora::LoraAdapter;
use crate::model::weights::{TensorRef, WeightFiles};
use crate::tokenizer::Tokenizer;

struct LlamaLayer {
    input_norm: Vec<f32>, // [hidden]
    q_proj: TensorRef,    // [num_heads*head_dim, hidden]
    k_proj: TensorRef,    // [num_kv_heads*head_dim, hidden]
    v_proj: TensorRef,    // [num_kv_heads*head_dim, hidden]
    o_proj: TensorRef,    // [hidden, num_heads*head_dim]
    post_norm: Vec<f32>,  // [hidden]
    gate_proj: TensorRef, // [intermediate, hidden]
    up_proj: TensorRef,   // [intermediate, hidden]
    down_proj: TensorRef, // [hidden, intermediate]
}

/// Where and how a model is loaded.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions<'a> {
    /// The backend forward passes run on.
    pub device: DeviceKind,
    /// The GPU ordinal, with `DeviceKind::Cuda`.
    pub gpu: usize,
    /// A LoRA adapter: a peft directory.
    pub adapter: Option<&'a Path>,
}

pub struct Llama {
    pub config: LlamaConfig,
    pub dir: PathBuf,
    /// `tokenizer.json`, when the directory has one (the debug commands work on ids alone).
    pub tokenizer: Option<Tokenizer>,
    /// The chat template of `tokenizer_config.json` or the GGUF metadata, when there is one.
    pub chat_template: Option<crate::select::chat::ChatTemplate>,
    files: WeightFiles,
    embed: TensorRef, // [vocab, hidden]
    layers: Vec<LlamaLayer>,
    final_norm: Vec<f32>, // [hidden]
    lm_head: TensorRef,   // [vocab, hidden]; the embedding when tied
    rope: RopeTable,
    /// A LoRA adapter: applied beside the projections on the CPU, merged into them on the GPU.
    pub adapter: Option<LoraAdapter>,
    /// The weights on the GPU, when loaded with `--device cuda`; forward passes then run there.
    #[cfg(feature = "cuda")]
    cuda: Option<crate::model::llama::cuda::CudaLlama>,
}

/// Which logits a forward pass computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitRows<'a> {
    /// One row per input token (teacher forcing, `kpg debug logits`).
    All,
    /// One row per sequence, for its last token (generation).
    Last,
    /// None (a prefill chunk that is not the last).
    None,
    /// For each sequence, only the logits of these vocabulary ids at its last token (none for an
    /// empty list), concatenated in batch order: the selector's label head, two dot products per
    /// choice instead of a vocabulary-wide matrix product.
    LastAmong(&'a [&'a [u32]]),
}

/// One sequence's part of a batch: its cache blocks and the new tokens to append.
pub struct SeqChunk<'a> {
    pub table: &'a mut BlockTable,
    pub tokens: &'a [u32],
}

/// Scratch buffers for one batch shape, grown on demand and reused, so that steady-state decoding
/// does not allocate.
#[derive(Default)]
pub struct LlamaWorkspace {
    x: Vec<f32>,                    // [tokens, hidden] residual stream
    h: Vec<f32>,                    // [tokens, hidden] normed input of a sub-block
    q: Vec<f32>,                    // [tokens, num_heads*head_dim]
    k: Vec<f32>,                    // [tokens, num_kv_heads*head_dim]
    v: Vec<f32>,                    // [tokens, num_kv_heads*head_dim]
    attn: Vec<f32>,                 // [tokens, num_heads*head_dim]
    proj: Vec<f32>,                 // [tokens, hidden]
    gate: Vec<f32>,                 // [tokens, intermediate]
    up: Vec<f32>,                   // [tokens, intermediate]
    last: Vec<f32>,                 // [rows, hidden] hidden states whose logits are wanted
    logits: Vec<f32>,               // [rows, vocab]
    ids: Vec<u32>,                  // [tokens]
    token_seq: Vec<u32>,            // [tokens]
    token_pos: Vec<u32>,            // [tokens]
    slot_mapping: Vec<usize>,       // [tokens]
    label_pairs: Vec<(usize, u32)>, // [labels] (token row, vocabulary id)
    linear: LinearScratch,
    #[cfg(feature = "cuda")]
    cuda: Option<Box<crate::model::llama::cuda::CudaLlamaWorkspace>>,
}

fn grow(buf: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if buf.len() < n {
        buf.resize(n, 0.0);
    }
    &mut buf[..n]
}

impl Llama {
    /// Loads a Hugging Face LLaMA directory: config, memory-mapped weights, optional tokenizer.
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_on(dir, DeviceKind::Cpu)
    }

    /// Loads the model for `device`: on CUDA the weights are uploaded to GPU 0 (bf16) and every
    /// forward pass runs there.
    pub fn load_on(dir: &Path, device: DeviceKind) -> Result<Self> {
        Self::load_with(
            dir,
            &LoadOptions {
                device,
                ..LoadOptions::default()
            },
        )
    }

    /// As [`Llama::load_on`], on the GPU `opts.gpu`, with the LoRA adapter of a peft directory
    /// when `opts.adapter` names one.
    pub fn load_with(dir: &Path, opts: &LoadOptions<'_>) -> Result<Self> {
        let (device, adapter) = (opts.device, opts.adapter);
        device.require_built()?;
        #[allow(unused_mut)]
        let mut model = Self::load_host(dir)?;
        if let Some(adapter) = adapter {
            let adapter = LoraAdapter::load(adapter)?;
            adapter.check(|name| match model.files.tensor(name) {
                Ok(t) if t.shape.len() == 2 => Some([t.shape[0], t.shape[1]]),
                _ => None,
            })?;
            model.adapter = Some(adapter);
        }
        #[cfg(feature = "cuda")]
        if device == DeviceKind::Cuda {
            let dev = crate::backend::cuda::CudaDevice::new(opts.gpu)?;
            model.cuda = Some(model.upload(&dev)?);
        }
        Ok(model)
    }

    /// The weights, as loaded (mapped safetensors, or a GGUF file's blocks or their f32 values).
    pub fn weights(&self) -> &WeightFiles {
        &self.files
    }

    /// The RoPE inverse frequencies, `[head_dim / 2]`, with any scaling applied.
    pub fn rope_inv_freq(&self) -> &[f32] {
        self.rope.inv_freq()
    }

    /// The device the forward passes run on.
    pub fn device(&self) -> DeviceKind {
        #[cfg(feature = "cuda")]
        if self.cuda.is_some() {
            return DeviceKind::Cuda;
        }
        DeviceKind::Cpu
    }

    #[cfg(feature = "cuda")]
    fn upload(
        &self,
        dev: &std::sync::Arc<crate::backend::cuda::CudaDevice>,
    ) -> Result<crate::model::llama::cuda::CudaLlama> {
        use crate::model::llama::cuda::{CudaLlama, HostLayer};
        let layers: Vec<HostLayer<'_>> = self
            .layers
            .iter()
            .map(|l| HostLayer {
                input_norm: &l.input_norm,
                q_proj: &l.q_proj,
                k_proj: &l.k_proj,
                v_proj: &l.v_proj,
                o_proj: &l.o_proj,
                post_norm: &l.post_norm,
                gate_proj: &l.gate_proj,
                up_proj: &l.up_proj,
                down_proj: &l.down_proj,
            })
            .collect();
        let lm_head = (!self.config.tie_word_embeddings).then_some(&self.lm_head);
        CudaLlama::upload(
            dev,
            crate::model::llama::cuda::HostWeights {
                files: &self.files,
                adapter: self.adapter.as_ref(),
            },
            &layers,
            &self.embed,
            lm_head,
            &self.final_norm,
            self.rope.inv_freq(),
        )
    }

    /// A Hugging Face directory (`config.json`, safetensors, `tokenizer.json`), or a GGUF file
    /// (config, weights in their blocks or dequantized, as `gguf::llama::weight_mode` says, and
    /// tokenizer, all from the file).
    fn load_host(dir: &Path) -> Result<Self> {
        let (config, files, tokenizer, chat_template) = if crate::gguf::is_gguf(dir) {
            let file = std::sync::Arc::new(crate::gguf::GgufFile::open(dir)?);
            let config = crate::gguf::llama::config(&file)?;
            let mode = crate::gguf::llama::weight_mode();
            let files = crate::gguf::llama::weights(&file, &config, mode)?;
            let tokenizer = crate::gguf::tokenizer::build(&file)?;
            let chat_template = crate::gguf::tokenizer::chat_template(&file);
            (config, files, tokenizer, chat_template)
        } else {
            if !dir.is_dir() {
                return Err(KpgError::MissingFile {
                    path: dir.to_path_buf(),
                });
            }
            let config = LlamaConfig::from_dir(dir)?;
            let files = WeightFiles::open(dir)?;
            let tok_path = dir.join("tokenizer.json");
            let tokenizer = if tok_path.exists() {
                Some(Tokenizer::from_file(&tok_path)?)
            } else {
                None
            };
            let chat_template = crate::select::chat::ChatTemplate::from_dir(dir)?;
            (config, files, tokenizer, chat_template)
        };
        let c = &config;
        let (hidden, inter) = (c.hidden_size, c.intermediate_size);
        let norm = |name: &str| -> Result<Vec<f32>> {
            let t = files.get(name, &[hidden])?;
            let mut out = vec![0f32; hidden];
            convert::to_f32(t.dtype, files.view(&t).bytes, &mut out);
            Ok(out)
        };
        files.check_finite()?;
        files.check_layer_count(
            "num_hidden_layers",
            c.num_hidden_layers,
            &format!(
                "model.layers.{}.input_layernorm.weight",
                c.num_hidden_layers.saturating_sub(1)
            ),
        )?;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("model.layers.{i}");
            layers.push(LlamaLayer {
                input_norm: norm(&format!("{p}.input_layernorm.weight"))?,
                q_proj: files.get(
                    &format!("{p}.self_attn.q_proj.weight"),
                    &[c.q_dim(), hidden],
                )?,
                k_proj: files.get(
                    &format!("{p}.self_attn.k_proj.weight"),
                    &[c.kv_dim(), hidden],
                )?,
                v_proj: files.get(
                    &format!("{p}.self_attn.v_proj.weight"),
                    &[c.kv_dim(), hidden],
                )?,
                o_proj: files.get(
                    &format!("{p}.self_attn.o_proj.weight"),
                    &[hidden, c.q_dim()],
                )?,
                post_norm: norm(&format!("{p}.post_attention_layernorm.weight"))?,
                gate_proj: files.get(&format!("{p}.mlp.gate_proj.weight"), &[inter, hidden])?,
                up_proj: files.get(&format!("{p}.mlp.up_proj.weight"), &[inter, hidden])?,
                down_proj: files.get(&format!("{p}.mlp.down_proj.weight"), &[hidden, inter])?,
            });
        }
        let embed = files.get("model.embed_tokens.weight", &[c.vocab_size, hidden])?;
        // Tied checkpoints usually omit lm_head.weight; transformers ignores it when present.
        let lm_head = if c.tie_word_embeddings {
            embed.clone()
        } else {
            files.get("lm_head.weight", &[c.vocab_size, hidden])?
        };
        let final_norm = norm("model.norm.weight")?;
        Ok(Llama {
            rope: RopeTable::new(&c.rope, c.head_dim),
            config,
            dir: dir.to_path_buf(),
            tokenizer,
            chat_template,
            files,
            embed,
            layers,
            final_norm,
            lm_head,
            adapter: None,
            #[cfg(feature = "cuda")]
            cuda: None,
        })
    }

    pub fn cache_shape(&self) -> CacheShape {
        CacheShape {
            num_layers: self.config.num_hidden_layers,
            num_kv_heads: self.config.num_key_value_heads,
            head_dim: self.config.head_dim,
        }
    }

    /// A KV cache on the model's device.
    pub fn new_cache(&self, capacity: CacheCapacity, block_size: usize) -> Result<PagedKvCache> {
        #[cfg(feature = "cuda")]
        if let Some(g) = &self.cuda {
            return PagedKvCache::new_on_device(
                g.device(),
                self.cache_shape(),
                capacity,
                block_size,
            );
        }
        PagedKvCache::new(self.cache_shape(), capacity, block_size)
    }

    /// Appends each sequence's chunk to the cache and returns the requested logits
    /// (`[rows, vocab]`, rows in batch order). On error nothing is appended.
    pub fn forward<'w>(
        &self,
        cache: &mut PagedKvCache,
        ws: &'w mut LlamaWorkspace,
        batch: &mut [SeqChunk<'_>],
        which: LogitRows<'_>,
    ) -> Result<&'w [f32]> {
        let c = &self.config;
        for chunk in batch.iter() {
            let needed = chunk.table.num_tokens() + chunk.tokens.len();
            if needed > c.max_position_embeddings {
                return Err(KpgError::ContextTooLong {
                    needed,
                    limit: c.max_position_embeddings,
                });
            }
            if let Some(&id) = chunk.tokens.iter().find(|&&id| id as usize >= c.vocab_size) {
                return Err(KpgError::TokenOutOfRange {
                    id,
                    vocab_size: c.vocab_size,
                });
            }
        }
        let total_blocks: usize = batch
            .iter()
            .map(|s| cache.blocks_needed(s.table, s.tokens.len()))
            .sum();
        if total_blocks > cache.allocator().num_free() {
            return Err(KpgError::CacheFull {
                needed: total_blocks,
                free: cache.allocator().num_free(),
                total: cache.allocator().num_blocks(),
            });
        }
        for s in batch.iter_mut() {
            cache.reserve(s.table, s.tokens.len())?;
        }

        let tokens: usize = batch.iter().map(|s| s.tokens.len()).sum();
        ws.ids.clear();
        ws.token_seq.clear();
        ws.token_pos.clear();
        ws.slot_mapping.clear();
        for (i, s) in batch.iter().enumerate() {
            let start = s.table.num_tokens();
            for (j, &id) in s.tokens.iter().enumerate() {
                ws.ids.push(id);
                ws.token_seq.push(i as u32);
                ws.token_pos.push((start + j) as u32);
                ws.slot_mapping.push(cache.slot(s.table, start + j));
            }
        }

        #[cfg(feature = "cuda")]
        if self.cuda.is_some() {
            return self.forward_cuda(cache, ws, batch, which);
        }

        // On a pool thread, the many short parallel regions of a pass (decoding a 135M model is
        // about 150 a token) start on the thread that asks for them, instead of each being
        // handed from this thread to the pool and back: two context switches each, a quarter of
        // a decode step's time on a 2-core VM (measured with perf, SmolLM2 Q4_1).
        rayon::scope(|_| self.forward_cpu(cache, ws, batch, which, tokens))
    }

    /// y += the adapter's update of weight `w` applied to x, when it has one.
    fn add_lora(&self, w: &TensorRef, y: &mut [f32], x: &[f32], rows: usize) {
        if let Some(update) = self.adapter.as_ref().and_then(|a| a.update(&w.name)) {
            update.apply(y, x, rows);
        }
    }

    /// The layers and logits on the CPU, for a batch whose metadata `forward` has built.
    fn forward_cpu<'w>(
        &self,
        cache: &mut PagedKvCache,
        ws: &'w mut LlamaWorkspace,
        batch: &mut [SeqChunk<'_>],
        which: LogitRows<'_>,
        tokens: usize,
    ) -> Result<&'w [f32]> {
        let c = &self.config;
        let (hidden, inter) = (c.hidden_size, c.intermediate_size);
        let (q_dim, kv_dim) = (c.q_dim(), c.kv_dim());
        grow(&mut ws.x, tokens * hidden);
        embedding_forward(
            &mut ws.x[..tokens * hidden],
            &ws.ids,
            self.files.view(&self.embed),
        );

        for (l, layer) in self.layers.iter().enumerate() {
            let x = &mut ws.x[..tokens * hidden];
            let h = grow(&mut ws.h, tokens * hidden);
            rmsnorm_forward(h, x, &layer.input_norm, c.rms_norm_eps);
            let q = grow(&mut ws.q, tokens * q_dim);
            let k = grow(&mut ws.k, tokens * kv_dim);
            let v = grow(&mut ws.v, tokens * kv_dim);
            linear_forward_many(
                &mut [&mut *q, &mut *k, &mut *v],
                h,
                &[
                    self.files.view(&layer.q_proj),
                    self.files.view(&layer.k_proj),
                    self.files.view(&layer.v_proj),
                ],
                tokens,
                &mut ws.linear,
            );
            self.add_lora(&layer.q_proj, q, h, tokens);
            self.add_lora(&layer.k_proj, k, h, tokens);
            self.add_lora(&layer.v_proj, v, h, tokens);
            self.rope.rope_forward(q, &ws.token_pos);
            self.rope.rope_forward(k, &ws.token_pos);
            cache.write_kv(l, &ws.slot_mapping, k, v);

            let tables: Vec<&[u32]> = batch.iter().map(|s| s.table.blocks()).collect();
            let ctx = TokenContext {
                token_seq: &ws.token_seq,
                token_pos: &ws.token_pos,
                block_tables: &tables,
            };
            let attn = grow(&mut ws.attn, tokens * q_dim);
            paged_attention_forward(attn, q, cache.layer(l), &ctx, c.num_attention_heads);
            let proj = grow(&mut ws.proj, tokens * hidden);
            linear_forward(
                proj,
                attn,
                self.files.view(&layer.o_proj),
                tokens,
                &mut ws.linear,
            );
            self.add_lora(&layer.o_proj, proj, attn, tokens);
            residual_add_forward(x, proj);

            rmsnorm_forward(h, x, &layer.post_norm, c.rms_norm_eps);
            let gate = grow(&mut ws.gate, tokens * inter);
            let up = grow(&mut ws.up, tokens * inter);
            linear_forward_many(
                &mut [&mut *gate, &mut *up],
                h,
                &[
                    self.files.view(&layer.gate_proj),
                    self.files.view(&layer.up_proj),
                ],
                tokens,
                &mut ws.linear,
            );
            self.add_lora(&layer.gate_proj, gate, h, tokens);
            self.add_lora(&layer.up_proj, up, h, tokens);
            silu_mul_forward(gate, up);
            linear_forward(
                proj,
                gate,
                self.files.view(&layer.down_proj),
                tokens,
                &mut ws.linear,
            );
            self.add_lora(&layer.down_proj, proj, gate, tokens);
            residual_add_forward(x, proj);
        }
        for s in batch.iter_mut() {
            cache.advance(s.table, s.tokens.len());
        }

        // Only the rows whose logits are wanted go through the final norm and the LM head.
        let x = &ws.x[..tokens * hidden];
        let rows = match which {
            LogitRows::None => return Ok(&ws.logits[..0]),
            LogitRows::LastAmong(ids) => return self.restricted_head(ws, batch, ids),
            LogitRows::All => {
                grow(&mut ws.last, tokens * hidden).copy_from_slice(x);
                tokens
            }
            LogitRows::Last => {
                let last = grow(&mut ws.last, batch.len() * hidden);
                let mut end = 0;
                for (i, s) in batch.iter().enumerate() {
                    end += s.tokens.len();
                    let t = end.checked_sub(1).ok_or_else(|| {
                        KpgError::InvalidArgument(
                            "a sequence in the batch has no new tokens".into(),
                        )
                    })?;
                    last[i * hidden..(i + 1) * hidden]
                        .copy_from_slice(&x[t * hidden..(t + 1) * hidden]);
                }
                batch.len()
            }
        };
        let h = grow(&mut ws.h, rows * hidden);
        rmsnorm_forward(
            h,
            &ws.last[..rows * hidden],
            &self.final_norm,
            c.rms_norm_eps,
        );
        let logits = grow(&mut ws.logits, rows * c.vocab_size);
        linear_forward(
            logits,
            h,
            self.files.view(&self.lm_head),
            rows,
            &mut ws.linear,
        );
        Ok(&ws.logits[..rows * c.vocab_size])
    }

    /// The layers and logits on the GPU, for a batch whose metadata `forward` has built.
    #[cfg(feature = "cuda")]
    fn forward_cuda<'w>(
        &self,
        cache: &mut PagedKvCache,
        ws: &'w mut LlamaWorkspace,
        batch: &mut [SeqChunk<'_>],
        which: LogitRows<'_>,
    ) -> Result<&'w [f32]> {
        use crate::model::llama::cuda::{CudaLogits, ForwardBatch};
        let gpu = self.cuda.as_ref().expect("checked by the caller");
        let last_rows = || -> Result<Vec<usize>> {
            let mut end = 0;
            batch
                .iter()
                .map(|s| {
                    end += s.tokens.len();
                    end.checked_sub(1).ok_or_else(|| {
                        KpgError::InvalidArgument(
                            "a sequence in the batch has no new tokens".into(),
                        )
                    })
                })
                .collect()
        };
        let (rows, pairs) = match which {
            LogitRows::None => (Vec::new(), Vec::new()),
            LogitRows::All => ((0..ws.ids.len()).collect(), Vec::new()),
            LogitRows::Last => (last_rows()?, Vec::new()),
            LogitRows::LastAmong(ids) => {
                let mut pairs = Vec::new();
                self.label_pairs(batch, ids, &mut pairs)?;
                (Vec::new(), pairs)
            }
        };
        let tables: Vec<&[u32]> = batch.iter().map(|s| s.table.blocks()).collect();
        let gws = ws.cuda.get_or_insert_with(Default::default);
        let result = gpu.forward(
            &self.config,
            cache,
            gws,
            &ForwardBatch {
                ids: &ws.ids,
                token_seq: &ws.token_seq,
                token_pos: &ws.token_pos,
                slot_mapping: &ws.slot_mapping,
                block_tables: &tables,
            },
            match which {
                LogitRows::None => CudaLogits::None,
                LogitRows::LastAmong(_) => CudaLogits::Labels(&pairs),
                _ => CudaLogits::Rows(&rows),
            },
            &mut ws.logits,
        );
        drop(tables);
        result?;
        for s in batch.iter_mut() {
            cache.advance(s.table, s.tokens.len());
        }
        Ok(&ws.logits[..])
    }

    /// `(token row, vocabulary id)` of each wanted label logit (`LogitRows::LastAmong`), in batch
    /// order: one list of ids per sequence, each id in the vocabulary.
    fn label_pairs(
        &self,
        batch: &[SeqChunk<'_>],
        ids: &[&[u32]],
        pairs: &mut Vec<(usize, u32)>,
    ) -> Result<()> {
        let c = &self.config;
        pairs.clear();
        if ids.len() != batch.len() {
            return Err(KpgError::Shape {
                op: "restricted LM head",
                expected: format!("{} id lists (one per sequence)", batch.len()),
                got: ids.len().to_string(),
            });
        }
        let mut end = 0;
        for (chunk, wanted) in batch.iter().zip(ids) {
            end += chunk.tokens.len();
            if wanted.is_empty() {
                continue;
            }
            let t = end.checked_sub(1).ok_or_else(|| {
                KpgError::InvalidArgument("a sequence in the batch has no new tokens".into())
            })?;
            for &id in wanted.iter() {
                if id as usize >= c.vocab_size {
                    return Err(KpgError::TokenOutOfRange {
                        id,
                        vocab_size: c.vocab_size,
                    });
                }
                pairs.push((t, id));
            }
        }
        Ok(())
    }

    /// Logits of a few vocabulary ids per sequence at its last token (`LogitRows::LastAmong`).
    fn restricted_head<'w>(
        &self,
        ws: &'w mut LlamaWorkspace,
        batch: &[SeqChunk<'_>],
        ids: &[&[u32]],
    ) -> Result<&'w [f32]> {
        let c = &self.config;
        let hidden = c.hidden_size;
        let mut pairs = std::mem::take(&mut ws.label_pairs);
        self.label_pairs(batch, ids, &mut pairs)?;
        let head = self.files.view(&self.lm_head);
        let row_bytes = head.dtype.row_bytes(hidden);
        grow(&mut ws.h, hidden);
        grow(&mut ws.last, hidden);
        grow(&mut ws.logits, pairs.len());
        let mut normed = None;
        for (out, &(t, id)) in pairs.iter().enumerate() {
            let h = &mut ws.h[..hidden];
            if normed != Some(t) {
                rmsnorm_forward(
                    h,
                    &ws.x[t * hidden..(t + 1) * hidden],
                    &self.final_norm,
                    c.rms_norm_eps,
                );
                normed = Some(t);
            }
            let row = &mut ws.last[..hidden];
            let start = id as usize * row_bytes;
            convert::to_f32(head.dtype, &head.bytes[start..start + row_bytes], row);
            ws.logits[out] = simd::dot(h, row);
        }
        let total = pairs.len();
        ws.label_pairs = pairs;
        Ok(&ws.logits[..total])
    }
}
