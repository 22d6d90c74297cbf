//! AdamW exactly as `torch.optim.AdamW` (decoupled weight decay `p ← p·(1 − lr·wd)` before the
//! bias-corrected Adam step), the learning-rate schedule (linear warm-up, then linear decay to
//! zero, as transformers' `get_linear_schedule_with_warmup`), gradient clipping, and the state on
//! disk so that a resumed run continues bit for bit.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use super::lora_params::LoraParams;
use crate::autodiff::adam::{read_f32_tensor, st_err};
use crate::error::{KpgError, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Steps taken.
    pub step: u64,
    m: LoraParams<f32>,
    v: LoraParams<f32>,
}

/// The learning rate at `step` (from 0): `peak·(step+1)/warmup` while warming up, then falling
/// linearly to zero at `total`.
pub fn scheduled_lr(peak: f64, step: u64, warmup: u64, total: u64) -> f64 {
    if step < warmup {
        peak * (step + 1) as f64 / warmup as f64
    } else {
        let left = total.saturating_sub(step) as f64;
        peak * left / total.saturating_sub(warmup).max(1) as f64
    }
}

/// Scales the gradients so that their global L2 norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_`; returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut LoraParams<f32>, max_norm: f64) -> f64 {
    let norm = grads.sum_sq().sqrt();
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        let c = coef as f32;
        grads
            .slices_mut()
            .for_each(|s| s.iter_mut().for_each(|g| *g *= c));
    }
    norm
}

impl AdamW {
    /// torch's defaults but for the weight decay, which the caller chooses.
    pub fn new(params: &LoraParams<f32>, weight_decay: f64) -> Self {
        AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            step: 0,
            m: params.zeros_like(),
            v: params.zeros_like(),
        }
    }

    /// One update of every parameter from its gradient at learning rate `lr`.
    pub fn update(&mut self, params: &mut LoraParams<f32>, grads: &LoraParams<f32>, lr: f64) {
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.beta1 as f32, self.beta2 as f32);
        let decay = (1.0 - lr * self.weight_decay) as f32;
        let step_size = (lr / (1.0 - self.beta1.powi(t))) as f32;
        let bc2_sqrt = ((1.0 - self.beta2.powi(t)) as f32).sqrt();
        let eps = self.eps as f32;
        for (((p, g), m), v) in params
            .slices_mut()
            .zip(grads.slices())
            .zip(self.m.slices_mut())
            .zip(self.v.slices_mut())
        {
            for i in 0..p.len() {
                let gi = g[i];
                p[i] *= decay;
                m[i] = b1 * m[i] + (1.0 - b1) * gi;
                v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                p[i] -= step_size * m[i] / (v[i].sqrt() / bc2_sqrt + eps);
            }
        }
    }

    /// Writes the moments (`m.<i>`, `v.<i>` by matrix) and the step and hyper-parameters.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut views = Vec::new();
        for (prefix, moment) in [("m", &self.m), ("v", &self.v)] {
            for (i, s) in moment.slices().enumerate() {
                let view = TensorView::new(Dtype::F32, vec![s.len()], bytemuck::cast_slice(s))
                    .map_err(|e| st_err(path, e))?;
                views.push((format!("{prefix}.{i}"), view));
            }
        }
        let meta: HashMap<String, String> = [
            ("step", self.step.to_string()),
            ("beta1", self.beta1.to_string()),
            ("beta2", self.beta2.to_string()),
            ("eps", self.eps.to_string()),
            ("weight_decay", self.weight_decay.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| st_err(path, e))?;
        crate::checkpoint::write_atomic(path, &bytes)
    }

    /// Reads a state written by [`AdamW::save`] for parameters shaped as `params`.
    pub fn load(path: &Path, params: &LoraParams<f32>) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| KpgError::io(path, e))?;
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| st_err(path, e))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| st_err(path, e))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let num = |k: &str| -> Result<f64> {
            meta.get(k)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| st_err(path, format!("metadata `{k}` missing or not a number")))
        };
        let mut adam = AdamW::new(params, num("weight_decay")?);
        adam.step = num("step")? as u64;
        adam.beta1 = num("beta1")?;
        adam.beta2 = num("beta2")?;
        adam.eps = num("eps")?;
        for (prefix, moment) in [("m", &mut adam.m), ("v", &mut adam.v)] {
            for (i, s) in moment.slices_mut().enumerate() {
                read_f32_tensor(&st, path, &format!("{prefix}.{i}"), &[s.len()], s)?;
            }
        }
        Ok(adam)
    }
}
