//! The generator's parameters as plain vectors, by name, in the order of
//! [`crate::model::one2set::tensor_specs`], with the authors' initialisation, and saved as a
//! generator directory that `One2Set::load` and `kpg generate` read.

use std::path::Path;

use crate::autodiff::Real;
use crate::backend::cpu::convert;
use crate::error::{KpgError, Result};
use crate::model::one2set::tensor_specs;
use crate::model::one2set_config::One2SetConfig;
use crate::model::weights::{DType, WeightFiles};
use crate::synth::splitmix64;
use crate::synth::writer::{write_safetensors, TensorSpec};

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor<T> {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<T>, // [shape.product()] row-major
}

/// All tensors of a generator (or their gradients, or an optimiser moment).
#[derive(Debug, Clone, PartialEq)]
pub struct Params<T> {
    pub config: One2SetConfig,
    pub tensors: Vec<Tensor<T>>,
}

/// A stream of uniform numbers in [0, 1) for one tensor.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        (splitmix64(self.0) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Half-width of the uniform distribution tensor `name` starts from, or `None` for a constant
/// (LayerNorm: weight 1, bias 0). jiacheng-ye/kg_one2set: the embedding U(±0.1) (`init_emb`); the
/// control codes U(±0.1) (`control_code.weight.data.uniform_(-0.1, 0.1)` in the decoder's
/// constructor); attention projections Xavier-uniform (`MultiHeadAttention.reset_parameters`);
/// every other `nn.Linear` PyTorch's default, U(±1/sqrt(fan_in)) for weight and bias.
fn init_half_width(name: &str, fan_in: usize, fan_out: usize) -> Option<f64> {
    let proj = ["q_proj", "k_proj", "v_proj", "out_proj"]
        .iter()
        .any(|p| name.ends_with(&format!("{p}.weight")));
    if name.contains("layer_norm") {
        None
    } else if name == "embed.weight" || name == "decoder.control_code.weight" {
        Some(0.1)
    } else if proj {
        Some((6.0 / (fan_in + fan_out) as f64).sqrt())
    } else {
        Some(1.0 / (fan_in as f64).sqrt())
    }
}

impl<T: Real> Params<T> {
    /// All tensors zero.
    pub fn zeros(config: &One2SetConfig) -> Self {
        let tensors = tensor_specs(config)
            .into_iter()
            .map(|(name, shape)| Tensor {
                data: vec![T::zero(); shape.iter().product()],
                name,
                shape,
            })
            .collect();
        Params {
            config: config.clone(),
            tensors,
        }
    }

    /// The authors' initialisation, a pure function of `seed`.
    pub fn init(config: &One2SetConfig, seed: u64) -> Self {
        let mut p = Self::zeros(config);
        let shapes: Vec<(String, Vec<usize>)> = tensor_specs(config);
        for (i, t) in p.tensors.iter_mut().enumerate() {
            // A bias takes its fan-in from its weight.
            let wname = t.name.replace(".bias", ".weight");
            let wshape = &shapes.iter().find(|(n, _)| *n == wname).unwrap().1;
            let (fan_out, fan_in) = (wshape[0], *wshape.last().unwrap());
            let mut rng = Rng(splitmix64(
                seed ^ (i as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407),
            ));
            match init_half_width(&t.name, fan_in, fan_out) {
                Some(a) => t
                    .data
                    .iter_mut()
                    .for_each(|v| *v = T::of(a * (2.0 * rng.next() - 1.0))),
                None if t.name.ends_with(".weight") => t.data.fill(T::one()),
                None => t.data.fill(T::zero()),
            }
        }
        p
    }

    /// The same names and shapes, all zero (gradients, optimiser moments).
    pub fn zeros_like(&self) -> Self {
        Self::zeros(&self.config)
    }

    pub fn fill_zero(&mut self) {
        self.tensors.iter_mut().for_each(|t| t.data.fill(T::zero()));
    }

    pub fn num_params(&self) -> usize {
        self.tensors.iter().map(|t| t.data.len()).sum()
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.tensors.iter().position(|t| t.name == name)
    }

    pub fn get(&self, name: &str) -> Option<&Tensor<T>> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Every (parameter, gradient) pair, for an optimiser.
    pub fn pairs_mut<'a>(
        &'a mut self,
        grads: &'a Params<T>,
    ) -> impl Iterator<Item = (&'a mut Tensor<T>, &'a Tensor<T>)> {
        assert_eq!(self.tensors.len(), grads.tensors.len(), "parameter layouts");
        self.tensors.iter_mut().zip(&grads.tensors)
    }

    /// The same values in another float type.
    pub fn cast<U: Real>(&self) -> Params<U> {
        Params {
            config: self.config.clone(),
            tensors: self
                .tensors
                .iter()
                .map(|t| Tensor {
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                    data: t.data.iter().map(|&v| U::of(v.f64())).collect(),
                })
                .collect(),
        }
    }

    /// Writes `config.json` and an f32 `model.safetensors` to `dir` (created if missing).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| KpgError::io(dir, e))?;
        let mut config = self.config.clone();
        config.dtype = Some("float32".into());
        let path = dir.join("config.json");
        let json = serde_json::to_string_pretty(&config.to_json()).expect("plain values");
        std::fs::write(&path, json).map_err(|e| KpgError::io(&path, e))?;
        let specs: Vec<TensorSpec> = self
            .tensors
            .iter()
            .map(|t| TensorSpec {
                name: t.name.clone(),
                shape: t.shape.clone(),
            })
            .collect();
        let mut chunk = Vec::new();
        write_safetensors(
            &dir.join("model.safetensors"),
            &specs,
            DType::F32,
            |i, start, buf| {
                let data = &self.tensors[i].data;
                let n = (1usize << 20).min(data.len() - start);
                chunk.clear();
                chunk.extend(data[start..start + n].iter().map(|v| v.f64() as f32));
                convert::from_f32(DType::F32, &chunk, buf);
            },
        )
    }
}

impl Params<f32> {
    /// Reads a generator directory (`config.json`, `model.safetensors` in any dtype) into f32.
    pub fn load(dir: &Path) -> Result<Self> {
        let config = One2SetConfig::from_dir(dir)?;
        let files = WeightFiles::open(dir)?;
        files.check_finite()?;
        let mut p = Self::zeros(&config);
        for t in &mut p.tensors {
            let r = files.get(&t.name, &t.shape)?;
            convert::to_f32(r.dtype, files.view(&r).bytes, &mut t.data);
        }
        Ok(p)
    }
}
