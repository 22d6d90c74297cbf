//! The frozen base model of a LoRA run, widened to dense `T` matrices: training multiplies by each
//! weight and by its transpose at prefill sizes, where a dense GEMM is fastest, and GGUF blocks or
//! bf16 would be widened on every use anyway. SmolLM2-135M takes 540 MB in f32.

use crate::autodiff::Real;
use crate::backend::cpu::convert;
use crate::error::Result;
use crate::model::config::LlamaConfig;
use crate::model::lora::PROJECTIONS;
use crate::model::weights::WeightFiles;

/// The weight name of projection `p` (an index into [`PROJECTIONS`]) in layer `l`.
pub fn projection_weight(l: usize, p: usize) -> String {
    let block = if p < 4 { "self_attn" } else { "mlp" };
    format!("model.layers.{l}.{block}.{}.weight", PROJECTIONS[p])
}

pub struct BaseLayer<T> {
    pub input_norm: Vec<T>, // [hidden]
    pub post_norm: Vec<T>,  // [hidden]
    /// q, k, v, o, gate, up, down, in [`PROJECTIONS`] order, each `[out, in]`.
    pub proj: Vec<Vec<T>>,
}

pub struct BaseModel<T> {
    pub config: LlamaConfig,
    pub embed: Vec<T>, // [vocab, hidden]
    pub layers: Vec<BaseLayer<T>>,
    pub final_norm: Vec<T>, // [hidden]
    /// `[vocab, hidden]`; `None` when tied to the embedding.
    lm_head: Option<Vec<T>>,
    pub inv_freq: Vec<f32>, // [head_dim / 2]
}

/// A tensor of the model widened to `T`, checked against its expected shape.
fn dense<T: Real>(files: &WeightFiles, name: &str, shape: &[usize]) -> Result<Vec<T>> {
    let t = files.get(name, shape)?;
    let mut f = vec![0f32; shape.iter().product()];
    convert::to_f32(t.dtype, files.view(&t).bytes, &mut f);
    Ok(f.into_iter().map(|x| T::of(x as f64)).collect())
}

impl<T: Real> BaseModel<T> {
    /// Widens the weights of a loaded model (safetensors of any float type, or GGUF blocks).
    pub fn from_files(config: &LlamaConfig, files: &WeightFiles, inv_freq: &[f32]) -> Result<Self> {
        let c = config;
        let (h, i) = (c.hidden_size, c.intermediate_size);
        let shapes = [
            [c.q_dim(), h],
            [c.kv_dim(), h],
            [c.kv_dim(), h],
            [h, c.q_dim()],
            [i, h],
            [i, h],
            [h, i],
        ];
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for l in 0..c.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let mut proj = Vec::with_capacity(PROJECTIONS.len());
            for (j, shape) in shapes.iter().enumerate() {
                proj.push(dense(files, &projection_weight(l, j), shape)?);
            }
            layers.push(BaseLayer {
                input_norm: dense(files, &format!("{p}.input_layernorm.weight"), &[h])?,
                post_norm: dense(files, &format!("{p}.post_attention_layernorm.weight"), &[h])?,
                proj,
            });
        }
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            Some(dense(files, "lm_head.weight", &[c.vocab_size, h])?)
        };
        Ok(BaseModel {
            config: c.clone(),
            embed: dense(files, "model.embed_tokens.weight", &[c.vocab_size, h])?,
            layers,
            final_norm: dense(files, "model.norm.weight", &[h])?,
            lm_head,
            inv_freq: inv_freq.to_vec(),
        })
    }

    pub fn lm_head(&self) -> &[T] {
        self.lm_head.as_deref().unwrap_or(&self.embed)
    }

    /// `[out, in]` of projection `p`.
    pub fn projection_shape(&self, p: usize) -> (usize, usize) {
        let c = &self.config;
        let (h, i) = (c.hidden_size, c.intermediate_size);
        match p {
            0 => (c.q_dim(), h),
            1 | 2 => (c.kv_dim(), h),
            3 => (h, c.q_dim()),
            4 | 5 => (i, h),
            _ => (h, i),
        }
    }
}
