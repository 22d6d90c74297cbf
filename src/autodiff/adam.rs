//! Adam (Kingma & Ba 2015) exactly as `torch.optim.Adam` (no weight decay, bias-corrected step
//! `lr/(1−β1^t)`, denominator `sqrt(v)/sqrt(1−β2^t) + eps`), the One2Set reference settings as
//! defaults, `torch.nn.utils.clip_grad_norm_`, and the optimiser state on disk so that training
//! resumes exactly.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use super::{Params, Real};
use crate::error::{KpgError, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Steps taken.
    pub step: u64,
    pub m: Params<f32>,
    pub v: Params<f32>,
}

impl Adam {
    /// The One2Set reference: lr 1e-4, betas (0.9, 0.998), eps 1e-9, moments zero.
    pub fn new(params: &Params<f32>) -> Self {
        Adam {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.998,
            eps: 1e-9,
            step: 0,
            m: params.zeros_like(),
            v: params.zeros_like(),
        }
    }

    /// One update of every parameter from its gradient.
    pub fn step(&mut self, params: &mut Params<f32>, grads: &Params<f32>) {
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.beta1 as f32, self.beta2 as f32);
        let step_size = (self.lr / (1.0 - self.beta1.powi(t))) as f32;
        let bc2_sqrt = ((1.0 - self.beta2.powi(t)) as f32).sqrt();
        let eps = self.eps as f32;
        for (((p, g), m), v) in params
            .pairs_mut(grads)
            .zip(&mut self.m.tensors)
            .zip(&mut self.v.tensors)
        {
            for i in 0..p.data.len() {
                let gi = g.data[i];
                m.data[i] = b1 * m.data[i] + (1.0 - b1) * gi;
                v.data[i] = b2 * v.data[i] + (1.0 - b2) * gi * gi;
                let denom = v.data[i].sqrt() / bc2_sqrt + eps;
                p.data[i] -= step_size * m.data[i] / denom;
            }
        }
    }

    /// Writes the moments (`m.<name>`, `v.<name>`, f32) and the step count and hyper-parameters
    /// (metadata) to one safetensors file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut views = Vec::new();
        for (prefix, moment) in [("m", &self.m), ("v", &self.v)] {
            for t in &moment.tensors {
                let bytes: &[u8] = bytemuck::cast_slice(&t.data);
                let view = TensorView::new(Dtype::F32, t.shape.clone(), bytes)
                    .map_err(|e| st_err(path, e))?;
                views.push((format!("{prefix}.{}", t.name), view));
            }
        }
        let meta: HashMap<String, String> = [
            ("step", self.step.to_string()),
            ("lr", self.lr.to_string()),
            ("beta1", self.beta1.to_string()),
            ("beta2", self.beta2.to_string()),
            ("eps", self.eps.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        safetensors::serialize_to_file(views, Some(meta), path).map_err(|e| st_err(path, e))
    }

    /// Reads a state written by [`Adam::save`] for parameters shaped as `params`.
    pub fn load(path: &Path, params: &Params<f32>) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| KpgError::io(path, e))?;
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| st_err(path, e))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| st_err(path, e))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let num = |k: &str| -> Result<f64> {
            meta.get(k)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| st_err(path, format!("metadata `{k}` missing or not a number")))
        };
        let mut adam = Adam::new(params);
        adam.step = num("step")? as u64;
        adam.lr = num("lr")?;
        adam.beta1 = num("beta1")?;
        adam.beta2 = num("beta2")?;
        adam.eps = num("eps")?;
        for (prefix, moment) in [("m", &mut adam.m), ("v", &mut adam.v)] {
            for t in &mut moment.tensors {
                let name = format!("{prefix}.{}", t.name);
                read_f32_tensor(&st, path, &name, &t.shape, &mut t.data)?;
            }
        }
        Ok(adam)
    }
}

/// Reads the f32 tensor `name` of `shape` from an optimiser state file into `out`; a missing
/// tensor or another shape or type is an error naming the file and the tensor.
pub(crate) fn read_f32_tensor(
    st: &SafeTensors<'_>,
    path: &Path,
    name: &str,
    shape: &[usize],
    out: &mut [f32],
) -> Result<()> {
    let view = st.tensor(name).map_err(|_| KpgError::MissingTensor {
        name: name.to_string(),
        path: path.to_path_buf(),
    })?;
    if view.dtype() != Dtype::F32 || view.shape() != shape {
        return Err(KpgError::TensorShape {
            name: name.to_string(),
            path: path.to_path_buf(),
            expected: shape.to_vec(),
            got: view.shape().to_vec(),
        });
    }
    for (o, c) in out.iter_mut().zip(view.data().chunks_exact(4)) {
        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    Ok(())
}

pub(crate) fn st_err(path: &Path, e: impl std::fmt::Display) -> KpgError {
    KpgError::SafeTensors {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Scales all gradients so that their global L2 norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_` (coefficient `max_norm / (norm + 1e-6)`, applied when below 1);
/// returns the norm before clipping.
pub fn clip_grad_norm<T: Real>(grads: &mut Params<T>, max_norm: f64) -> f64 {
    let sq: f64 = grads
        .tensors
        .iter()
        .flat_map(|t| t.data.iter())
        .map(|&g| g.f64() * g.f64())
        .sum();
    let norm = sq.sqrt();
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        let c = T::of(coef);
        grads
            .tensors
            .iter_mut()
            .for_each(|t| t.data.iter_mut().for_each(|g| *g *= c));
    }
    norm
}
