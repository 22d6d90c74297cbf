//! The trainable half of a LoRA run: an A `[r, in]` and a B `[out, r]` per targeted projection,
//! initialised as peft initialises them (A Kaiming-uniform with a = √5, so uniform in ±1/√in; B
//! zero, so that training starts from the base model), and written in peft's format so that
//! transformers + peft and `kpg --adapter` both load the result.

use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde_json::json;

use super::base::projection_weight;
use crate::autodiff::Real;
use crate::error::{KpgError, Result};
use crate::model::lora::{LoraAdapter, PROJECTIONS};
use crate::selftest::random::Rng;

/// One targeted projection's matrices.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraModule<T> {
    pub layer: usize,
    /// An index into [`PROJECTIONS`].
    pub proj: usize,
    pub in_features: usize,
    pub out_features: usize,
    pub a: Vec<T>, // [rank, in]
    pub b: Vec<T>, // [out, rank]
}

/// What a LoRA run trains: rank, scaling and targets.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraShape {
    pub rank: usize,
    pub alpha: f64,
    pub rslora: bool,
    /// Indices into [`PROJECTIONS`], ascending.
    pub targets: Vec<usize>,
}

impl LoraShape {
    /// Parses peft-style target names (`q_proj,v_proj`, or `all` for every projection).
    pub fn parse_targets(list: &str) -> Result<Vec<usize>> {
        if list.trim() == "all" {
            return Ok((0..PROJECTIONS.len()).collect());
        }
        let mut targets = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let i = PROJECTIONS.iter().position(|p| *p == name).ok_or_else(|| {
                KpgError::InvalidArgument(format!(
                    "unknown LoRA target `{name}`: the projections are {} (or `all`)",
                    PROJECTIONS.join(", ")
                ))
            })?;
            targets.push(i);
        }
        if targets.is_empty() {
            return Err(KpgError::InvalidArgument("no LoRA targets given".into()));
        }
        targets.sort_unstable();
        targets.dedup();
        Ok(targets)
    }

    /// `alpha / r`, or `alpha / √r` under rsLoRA, as peft scales the update.
    pub fn scale(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoraParams<T> {
    pub shape: LoraShape,
    pub modules: Vec<LoraModule<T>>,
    /// `[layer][projection]` → index into `modules`.
    index: Vec<[Option<usize>; 7]>,
}

impl<T: Real> LoraParams<T> {
    /// Fresh parameters for `layers` layers whose projection `p` is `shape_of(p)` = (out, in).
    pub fn init(
        shape: LoraShape,
        layers: usize,
        shape_of: impl Fn(usize) -> (usize, usize),
        seed: u64,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let r = shape.rank;
        let mut modules = Vec::new();
        for layer in 0..layers {
            for &proj in &shape.targets {
                let (out_features, in_features) = shape_of(proj);
                let bound = 1.0 / (in_features as f64).sqrt();
                let a = (0..r * in_features)
                    .map(|_| T::of(rng.uniform() as f64 * bound))
                    .collect();
                modules.push(LoraModule {
                    layer,
                    proj,
                    in_features,
                    out_features,
                    a,
                    b: vec![T::zero(); out_features * r],
                });
            }
        }
        Self::from_modules(shape, layers, modules)
    }

    fn from_modules(shape: LoraShape, layers: usize, modules: Vec<LoraModule<T>>) -> Self {
        let mut index = vec![[None; 7]; layers];
        for (i, m) in modules.iter().enumerate() {
            index[m.layer][m.proj] = Some(i);
        }
        LoraParams {
            shape,
            modules,
            index,
        }
    }

    /// Zeros of the same shape (gradients, moments).
    pub fn zeros_like(&self) -> Self {
        let mut z = self.clone();
        z.fill_zero();
        z
    }

    pub fn fill_zero(&mut self) {
        for m in &mut self.modules {
            m.a.fill(T::zero());
            m.b.fill(T::zero());
        }
    }

    pub fn module(&self, layer: usize, proj: usize) -> Option<&LoraModule<T>> {
        self.index[layer][proj].map(|i| &self.modules[i])
    }

    pub fn module_mut(&mut self, layer: usize, proj: usize) -> Option<&mut LoraModule<T>> {
        self.index[layer][proj].map(|i| &mut self.modules[i])
    }

    pub fn num_params(&self) -> usize {
        self.modules.iter().map(|m| m.a.len() + m.b.len()).sum()
    }

    /// Every matrix in a fixed order (A then B of each module), for the optimiser.
    pub fn slices(&self) -> impl Iterator<Item = &[T]> {
        self.modules
            .iter()
            .flat_map(|m| [m.a.as_slice(), m.b.as_slice()])
    }

    pub fn slices_mut(&mut self) -> impl Iterator<Item = &mut [T]> {
        self.modules
            .iter_mut()
            .flat_map(|m| [m.a.as_mut_slice(), m.b.as_mut_slice()])
    }

    /// Σ of the squares of every value.
    pub fn sum_sq(&self) -> f64 {
        self.slices()
            .flat_map(|s| s.iter())
            .map(|&v| v.f64() * v.f64())
            .sum()
    }

    /// The peft tensor name of a module's matrix (`half` "lora_A" or "lora_B").
    fn tensor_name(m: &LoraModule<T>, half: &str) -> String {
        let weight = projection_weight(m.layer, m.proj);
        let module = weight.strip_suffix(".weight").unwrap_or(&weight);
        format!("base_model.model.{module}.{half}.weight")
    }

    /// Writes `adapter_config.json` and `adapter_model.safetensors` (f32) into `dir`, each file
    /// atomically. `base` is recorded as `base_model_name_or_path`.
    pub fn save_peft(&self, dir: &Path, base: &str) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| KpgError::io(dir, e))?;
        let targets: Vec<&str> = self.shape.targets.iter().map(|&p| PROJECTIONS[p]).collect();
        let config = json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base,
            "r": self.shape.rank,
            "lora_alpha": self.shape.alpha,
            "use_rslora": self.shape.rslora,
            "target_modules": targets,
            "lora_dropout": 0.0,
            "bias": "none",
            "fan_in_fan_out": false,
            "use_dora": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "modules_to_save": null,
            "rank_pattern": {},
            "alpha_pattern": {},
            "layers_to_transform": null,
        });
        let text = serde_json::to_string_pretty(&config).expect("a JSON value serialises");
        crate::checkpoint::write_atomic(&dir.join("adapter_config.json"), text.as_bytes())?;

        let r = self.shape.rank;
        let values: Vec<(String, Vec<usize>, Vec<f32>)> = self
            .modules
            .iter()
            .flat_map(|m| {
                let f = |x: &[T]| x.iter().map(|v| v.f64() as f32).collect::<Vec<f32>>();
                [
                    (
                        Self::tensor_name(m, "lora_A"),
                        vec![r, m.in_features],
                        f(&m.a),
                    ),
                    (
                        Self::tensor_name(m, "lora_B"),
                        vec![m.out_features, r],
                        f(&m.b),
                    ),
                ]
            })
            .collect();
        let path = dir.join("adapter_model.safetensors");
        let mut views = Vec::with_capacity(values.len());
        for (name, shape, data) in &values {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(data))
                .map_err(|e| KpgError::SafeTensors {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            views.push((name.clone(), view));
        }
        let bytes = safetensors::serialize(views, None).map_err(|e| KpgError::SafeTensors {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        crate::checkpoint::write_atomic(&path, &bytes)
    }

    /// Parameters read back from an adapter (a checkpoint, or an adapter to train further), for a
    /// model of `layers` layers whose projection `p` is `shape_of(p)` = (out, in); the adapter must
    /// target exactly `shape`'s modules.
    pub fn from_adapter(
        adapter: &LoraAdapter,
        shape: LoraShape,
        layers: usize,
        shape_of: impl Fn(usize) -> (usize, usize),
    ) -> Result<Self> {
        let mut modules = Vec::new();
        for layer in 0..layers {
            for &proj in &shape.targets {
                let name = projection_weight(layer, proj);
                let pair = adapter
                    .update(&name)
                    .ok_or_else(|| KpgError::MissingTensor {
                        name: format!("{name} (lora_A/lora_B)"),
                        path: adapter.dir.join("adapter_model.safetensors"),
                    })?;
                let (out_features, in_features) = shape_of(proj);
                if pair.rank != shape.rank
                    || pair.a.len() != shape.rank * in_features
                    || pair.b.len() != out_features * shape.rank
                {
                    return Err(KpgError::TensorShape {
                        name,
                        path: adapter.dir.join("adapter_model.safetensors"),
                        expected: vec![out_features, shape.rank, in_features],
                        got: vec![pair.out_features(), pair.rank, pair.in_features()],
                    });
                }
                let widen = |x: &[f32]| x.iter().map(|&v| T::of(v as f64)).collect();
                modules.push(LoraModule {
                    layer,
                    proj,
                    in_features,
                    out_features,
                    a: widen(&pair.a),
                    b: widen(&pair.b),
                });
            }
        }
        Ok(Self::from_modules(shape, layers, modules))
    }
}
