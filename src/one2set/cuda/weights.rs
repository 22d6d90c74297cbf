//! The One2Set generator's weights on the GPU: uploaded once from the memory-mapped checkpoint as
//! bf16 matrices (the q, k, v projections of a self-attention, and the k, v of a cross-attention,
//! stacked into one matrix, so that each is one GEMM) and f32 vectors (biases, LayerNorm, control
//! codes, positions). The forward passes are in [`super::model`].

use std::sync::Arc;

use cudarc::driver::CudaSlice;
use half::bf16;

use crate::backend::cpu::convert as cpu_convert;
use crate::backend::cpu::sinusoid::SinusoidTable;
use crate::backend::cuda::{convert, CudaDevice, CudaResultExt};
use crate::error::Result;
use crate::model::one2set::One2Set;
use crate::model::one2set_config::One2SetConfig;
use crate::model::weights::WeightFiles;

/// A linear layer: bf16 weight, f32 bias.
pub(super) struct DevLinear {
    pub w: CudaSlice<bf16>, // [out, in]
    pub b: CudaSlice<f32>,  // [out]
}

pub(super) struct DevNorm {
    pub weight: CudaSlice<f32>, // [d]
    pub bias: CudaSlice<f32>,   // [d]
}

pub(super) struct EncoderLayer {
    pub(super) attn_norm: DevNorm,
    pub(super) qkv: DevLinear, // [3d, d]
    pub(super) out: DevLinear, // [d, d]
    pub(super) ffn_norm: DevNorm,
    pub(super) ffn_in: DevLinear,  // [ffn, d]
    pub(super) ffn_out: DevLinear, // [d, ffn]
}

pub(super) struct DecoderLayer {
    pub(super) self_norm: DevNorm,
    pub(super) self_qkv: DevLinear, // [3d, d]
    pub(super) self_out: DevLinear, // [d, d]
    pub(super) cross_norm: DevNorm,
    pub(super) cross_q: DevLinear,   // [d, d]
    pub(super) cross_kv: DevLinear,  // [2d, d]
    pub(super) cross_out: DevLinear, // [d, d]
    pub(super) ffn_norm: DevNorm,
    pub(super) ffn_in: DevLinear,  // [ffn, d]
    pub(super) ffn_out: DevLinear, // [d, ffn]
}

/// Uploads tensors by name, with the checkpoint's shape checks.
struct Uploader<'a> {
    dev: &'a CudaDevice,
    files: &'a WeightFiles,
}

impl Uploader<'_> {
    /// Matrices `[rows, cols]` stacked row-wise into one `[names · rows, cols]` bf16 buffer.
    fn matrix(&self, names: &[String], rows: usize, cols: usize) -> Result<CudaSlice<bf16>> {
        let n = rows * cols;
        let mut out = self.dev.alloc::<bf16>(names.len() * n, &names[0])?;
        for (i, name) in names.iter().enumerate() {
            let t = self.files.get(name, &[rows, cols])?;
            let part = convert::upload_bf16(self.dev, self.files.view(&t), name)?;
            let mut dst = out.slice_mut(i * n..(i + 1) * n);
            self.dev
                .stream()
                .memcpy_dtod(&part, &mut dst)
                .during(|| format!("placing tensor `{name}`"))?;
        }
        Ok(out)
    }

    /// Vectors (or small matrices) concatenated into one f32 buffer.
    fn vector(&self, names: &[String], shape: &[usize]) -> Result<CudaSlice<f32>> {
        let mut host = Vec::new();
        for name in names {
            let t = self.files.get(name, shape)?;
            let at = host.len();
            host.resize(at + t.numel(), 0f32);
            cpu_convert::to_f32(t.dtype, self.files.view(&t).bytes, &mut host[at..]);
        }
        self.dev.upload(&host, &names[0])
    }

    /// Linear layers with the same input, their outputs stacked (q, k, v into one product).
    fn linear(&self, prefixes: &[String], out: usize, inp: usize) -> Result<DevLinear> {
        let w: Vec<String> = prefixes.iter().map(|p| format!("{p}.weight")).collect();
        let b: Vec<String> = prefixes.iter().map(|p| format!("{p}.bias")).collect();
        Ok(DevLinear {
            w: self.matrix(&w, out, inp)?,
            b: self.vector(&b, &[out])?,
        })
    }

    fn one(&self, prefix: &str, out: usize, inp: usize) -> Result<DevLinear> {
        self.linear(&[prefix.to_string()], out, inp)
    }

    fn norm(&self, name: &str, d: usize) -> Result<DevNorm> {
        Ok(DevNorm {
            weight: self.vector(&[format!("{name}.weight")], &[d])?,
            bias: self.vector(&[format!("{name}.bias")], &[d])?,
        })
    }

    fn projections(&self, attn: &str, which: &[&str], d: usize) -> Result<DevLinear> {
        let names: Vec<String> = which.iter().map(|p| format!("{attn}.{p}_proj")).collect();
        self.linear(&names, d, d)
    }
}

/// The generator's weights on the GPU.
pub struct One2SetCuda {
    pub dev: Arc<CudaDevice>,
    pub config: One2SetConfig,
    pub(super) embed: CudaSlice<bf16>,    // [vocab, d]
    pub(super) positions: CudaSlice<f32>, // [max(max_source_len + 1, max_keyphrase_len), d]
    pub(super) encoder_input: DevLinear,  // [d, d]
    pub(super) encoder_layers: Vec<EncoderLayer>,
    pub(super) encoder_norm: DevNorm,
    pub(super) decoder_input: DevLinear,      // [d, d]
    pub(super) control_codes: CudaSlice<f32>, // [N, d]
    pub(super) decoder_layers: Vec<DecoderLayer>,
    pub(super) decoder_norm: DevNorm,
    pub(super) output_fc: DevLinear,          // [d, d]
    pub(super) output_layer: CudaSlice<bf16>, // [vocab, d]
    pub(super) p_gen_w: CudaSlice<f32>,       // [d]
    pub(super) p_gen_b: f32,
}

impl One2SetCuda {
    /// Uploads a loaded generator's weights (bf16 from the memory map, small vectors as f32).
    pub fn load(dev: Arc<CudaDevice>, model: &One2Set) -> Result<Self> {
        let c = model.config.clone();
        let (d, f) = (c.d_model, c.ffn_dim);
        let up = Uploader {
            dev: &dev,
            files: model.weight_files(),
        };
        let mut encoder_layers = Vec::with_capacity(c.encoder_layers);
        for i in 0..c.encoder_layers {
            let p = format!("encoder.layer_stacks.{i}");
            encoder_layers.push(EncoderLayer {
                attn_norm: up.norm(&format!("{p}.attn_layer_norm"), d)?,
                qkv: up.projections(&format!("{p}.self_attn"), &["q", "k", "v"], d)?,
                out: up.one(&format!("{p}.self_attn.out_proj"), d, d)?,
                ffn_norm: up.norm(&format!("{p}.ffn_layer_norm"), d)?,
                ffn_in: up.one(&format!("{p}.ffn.0"), f, d)?,
                ffn_out: up.one(&format!("{p}.ffn.3"), d, f)?,
            });
        }
        let mut decoder_layers = Vec::with_capacity(c.decoder_layers);
        for i in 0..c.decoder_layers {
            let p = format!("decoder.layer_stacks.{i}");
            decoder_layers.push(DecoderLayer {
                self_norm: up.norm(&format!("{p}.self_attn_layer_norm"), d)?,
                self_qkv: up.projections(&format!("{p}.self_attn"), &["q", "k", "v"], d)?,
                self_out: up.one(&format!("{p}.self_attn.out_proj"), d, d)?,
                cross_norm: up.norm(&format!("{p}.encoder_attn_layer_norm"), d)?,
                cross_q: up.one(&format!("{p}.encoder_attn.q_proj"), d, d)?,
                cross_kv: up.projections(&format!("{p}.encoder_attn"), &["k", "v"], d)?,
                cross_out: up.one(&format!("{p}.encoder_attn.out_proj"), d, d)?,
                ffn_norm: up.norm(&format!("{p}.final_layer_norm"), d)?,
                ffn_in: up.one(&format!("{p}.ffn.0"), f, d)?,
                ffn_out: up.one(&format!("{p}.ffn.3"), d, f)?,
            });
        }
        let pos_rows = (c.max_source_len + 1).max(c.max_keyphrase_len);
        let table = SinusoidTable::new(pos_rows, d);
        let host: Vec<f32> = (0..pos_rows).flat_map(|p| table.row(p).to_vec()).collect();
        let p_gen_b = {
            let t = up.files.get("decoder.p_gen_linear.bias", &[1])?;
            let mut b = [0f32];
            cpu_convert::to_f32(t.dtype, up.files.view(&t).bytes, &mut b);
            b[0]
        };
        Ok(One2SetCuda {
            embed: up.matrix(&["embed.weight".into()], c.vocab_size, d)?,
            positions: dev.upload(&host, "sinusoid positions")?,
            encoder_input: up.one("encoder.input_fc", d, d)?,
            encoder_layers,
            encoder_norm: up.norm("encoder.layer_norm", d)?,
            decoder_input: up.one("decoder.input_fc", d, d)?,
            control_codes: up.vector(
                &["decoder.control_code.weight".into()],
                &[c.num_control_codes, d],
            )?,
            decoder_layers,
            decoder_norm: up.norm("decoder.layer_norm", d)?,
            output_fc: up.one("decoder.output_fc", d, d)?,
            output_layer: up.matrix(&["decoder.output_layer.weight".into()], c.vocab_size, d)?,
            p_gen_w: up.vector(&["decoder.p_gen_linear.weight".into()], &[1, d])?,
            p_gen_b,
            config: c,
            dev,
        })
    }
}
