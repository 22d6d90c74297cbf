//! `kpg bench prefill` and `kpg bench ceilings`: the selector's prefill throughput in TFLOP/s,
//! and the two hardware ceilings it and the attention kernel are judged against (a large bf16
//! cuBLAS GEMM, a large device-to-device copy), measured in the same run.

use crate::model::llama::LoadOptions;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde_json::json;

use crate::backend::DeviceKind;
use crate::cli::print_line;
use crate::error::{KpgError, Result};
use crate::kv_cache::{BlockTable, CacheCapacity};
use crate::model::llama::{Llama, LlamaWorkspace, LogitRows, SeqChunk};

#[derive(Args, Debug)]
pub struct BenchPrefillArgs {
    /// Model directory (a synth preset such as llama2-7b).
    #[arg(long)]
    pub model: PathBuf,
    /// A LoRA adapter for the model: a peft directory (adapter_config.json,
    /// adapter_model.safetensors).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 8)]
    pub seqs: usize,
    /// Prompt tokens per sequence.
    #[arg(long, default_value_t = 512)]
    pub tokens: usize,
    /// Timed passes (after one warm-up pass); the median is reported.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Where the model runs.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceKind,
    /// GPU ordinal (with --device cuda).
    #[arg(long, default_value_t = 0)]
    pub gpu: usize,
}

#[derive(Args, Debug)]
pub struct BenchCeilingsArgs {
    /// Bytes of the device-to-device copy, in MiB.
    #[arg(long, default_value_t = 4096)]
    pub copy_mb: usize,
    /// m = n = k of the bf16 GEMM.
    #[arg(long, default_value_t = 8192)]
    pub gemm_size: usize,
    /// Timed repetitions of each (after warm-up); the median is reported.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// FLOPs of one prefill pass: 2 per weight per token in the dense products (the LM head skipped:
/// a prefill chunk wants no logits), plus QKᵀ and PV over each token's causal context.
fn prefill_flops(model: &Llama, seqs: usize, tokens: usize) -> f64 {
    let c = &model.config;
    let per_layer = c.hidden_size * (c.q_dim() + 2 * c.kv_dim())
        + c.q_dim() * c.hidden_size
        + 3 * c.hidden_size * c.intermediate_size;
    let dense = 2.0 * (per_layer * c.num_hidden_layers) as f64 * (seqs * tokens) as f64;
    // Σ over positions p of (p + 1) keys, for each sequence.
    let context = (tokens * (tokens + 1) / 2 * seqs) as f64;
    let attention =
        4.0 * c.num_hidden_layers as f64 * (c.num_attention_heads * c.head_dim) as f64 * context;
    dense + attention
}

pub fn bench_prefill(args: BenchPrefillArgs) -> Result<i32> {
    if args.seqs == 0 || args.tokens == 0 || args.runs == 0 {
        return Err(KpgError::InvalidArgument(
            "--seqs, --tokens and --runs must be at least 1".into(),
        ));
    }
    let model = Llama::load_with(
        &args.model,
        &LoadOptions {
            device: args.device,
            gpu: args.gpu,
            adapter: args.adapter.as_deref(),
        },
    )?;
    let bs = crate::kv_cache::DEFAULT_BLOCK_SIZE;
    let mut cache = model.new_cache(
        CacheCapacity::Tokens(args.seqs * args.tokens.div_ceil(bs) * bs),
        bs,
    )?;
    let mut ws = LlamaWorkspace::default();
    let vocab = model.config.vocab_size as u64;
    let prompts: Vec<Vec<u32>> = (0..args.seqs as u64)
        .map(|s| {
            (0..args.tokens as u64)
                .map(|t| ((s * 7919 + t * 104_729) % vocab) as u32)
                .collect()
        })
        .collect();
    let mut times = Vec::with_capacity(args.runs);
    for run in 0..=args.runs {
        let mut tables: Vec<BlockTable> = vec![BlockTable::default(); args.seqs];
        let mut batch: Vec<SeqChunk<'_>> = tables
            .iter_mut()
            .zip(&prompts)
            .map(|(table, p)| SeqChunk { table, tokens: p })
            .collect();
        // A None forward returns after the device has finished (the CUDA path synchronises).
        let start = Instant::now();
        model.forward(&mut cache, &mut ws, &mut batch, LogitRows::None)?;
        let secs = start.elapsed().as_secs_f64();
        drop(batch);
        for t in tables.iter_mut() {
            cache.release(t);
        }
        if run > 0 {
            times.push(secs);
        }
    }
    let secs = median(times);
    let flops = prefill_flops(&model, args.seqs, args.tokens);
    print_line(
        &json!({
            "bench": "prefill",
            "device": format!("{:?}", args.device).to_lowercase(),
            "model": args.model,
            "seqs": args.seqs,
            "tokens_per_seq": args.tokens,
            "seconds": secs,
            "tokens_per_s": (args.seqs * args.tokens) as f64 / secs,
            "flops": flops,
            "tflops": flops / secs / 1e12,
        })
        .to_string(),
    )?;
    Ok(0)
}

pub fn bench_ceilings(args: BenchCeilingsArgs) -> Result<i32> {
    DeviceKind::Cuda.require_built()?;
    ceilings(&args)
}

#[cfg(feature = "cuda")]
fn ceilings(args: &BenchCeilingsArgs) -> Result<i32> {
    use crate::backend::cuda::{gemm, CudaDevice, CudaResultExt};
    use half::bf16;
    if args.runs == 0 || args.copy_mb == 0 || args.gemm_size == 0 {
        return Err(KpgError::InvalidArgument(
            "--runs, --copy-mb and --gemm-size must be at least 1".into(),
        ));
    }
    let dev = CudaDevice::new(0)?;
    let n = args.copy_mb << 20;
    let src = dev.alloc::<u8>(n, "the copy source")?;
    let mut dst = dev.alloc::<u8>(n, "the copy destination")?;
    let mut copy_ms = Vec::new();
    for run in 0..=args.runs {
        let ms = dev.time_ms(|| {
            dev.stream()
                .memcpy_dtod(&src, &mut dst)
                .during(|| "copying device to device".into())
        })?;
        if run > 0 {
            copy_ms.push(ms as f64);
        }
    }
    drop((src, dst));
    let copy_s = median(copy_ms) / 1e3;
    // A copy reads and writes every byte.
    let copy_gbs = 2.0 * n as f64 / copy_s / 1e9;

    let s = args.gemm_size;
    let rng_vals: Vec<bf16> = (0..s * s)
        .map(|i| bf16::from_f32(((i * 2_654_435_761) % 1000) as f32 / 1000.0 - 0.5))
        .collect();
    let a = dev.upload(&rng_vals, "GEMM operand a")?;
    let b = dev.upload(&rng_vals, "GEMM operand b")?;
    let mut c = dev.alloc::<bf16>(s * s, "GEMM result")?;
    let mut gemm_ms = Vec::new();
    for run in 0..=args.runs {
        let ms = dev.time_ms(|| gemm::linear_bf16(&dev, &mut c, &a, &b, (s, s, s), 0.0))?;
        if run > 0 {
            gemm_ms.push(ms as f64);
        }
    }
    let gemm_s = median(gemm_ms) / 1e3;
    let tflops = 2.0 * (s as f64).powi(3) / gemm_s / 1e12;
    print_line(
        &json!({
            "bench": "ceilings",
            "device": dev.describe()?,
            "copy_bytes": n,
            "copy_seconds": copy_s,
            "copy_gb_per_s": copy_gbs,
            "gemm_size": s,
            "gemm_seconds": gemm_s,
            "gemm_bf16_tflops": tflops,
        })
        .to_string(),
    )?;
    Ok(0)
}

#[cfg(not(feature = "cuda"))]
fn ceilings(_: &BenchCeilingsArgs) -> Result<i32> {
    unreachable!("require_built refuses CUDA in a build without it")
}
