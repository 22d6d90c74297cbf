//! `kpg bench attention --device cuda`: the paged attention kernels on a synthetic batch, timed
//! with CUDA events (median of --repeats runs after warm-up, L2 flushed before each), against the
//! copy ceiling measured in the same run: a large device-to-device copy. Decode is a batch of
//! --batch sequences of --context positions, one new token each; prefill gives each sequence a
//! chunk of --chunk tokens ending at --context. Bytes are the keys and values a perfect kernel reads
//! (each sequence's context once, per KV head); the copy counts what it reads and writes. One JSON
//! line on stdout.

use clap::{Args, ValueEnum};

use crate::backend::DeviceKind;
use crate::error::{KpgError, Result};

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionMode {
    /// One new token per sequence.
    Decode,
    /// A chunk of --chunk tokens per sequence.
    Prefill,
}

#[derive(Args, Debug)]
pub struct BenchAttentionArgs {
    /// The backend (the benchmark times the CUDA kernels: `cuda`).
    #[arg(long, value_enum, default_value = "cuda")]
    pub device: DeviceKind,
    /// GPU ordinal.
    #[arg(long, default_value_t = 0)]
    pub gpu: usize,
    #[arg(long, value_enum, default_value = "decode")]
    pub mode: AttentionMode,
    /// Sequences in the batch.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Context length of every sequence (after its new tokens).
    #[arg(long, default_value_t = 2048)]
    pub context: usize,
    /// New tokens per sequence in prefill mode (at most --context).
    #[arg(long, default_value_t = 512)]
    pub chunk: usize,
    /// Query heads (LLaMA-2-7B: 32).
    #[arg(long, default_value_t = 32)]
    pub heads: usize,
    /// Key/value heads (32: LLaMA-2-7B; 4: a GQA-8 variant).
    #[arg(long, default_value_t = 32)]
    pub kv_heads: usize,
    #[arg(long, default_value_t = 128)]
    pub head_dim: usize,
    #[arg(long, default_value_t = crate::kv_cache::DEFAULT_BLOCK_SIZE)]
    pub block_size: usize,
    /// Split-KV: `auto`, `never`, or a partition length in keys.
    #[arg(long, default_value = "auto")]
    pub split: String,
    /// Timed runs (the median is reported); at least 20.
    #[arg(long, default_value_t = 50)]
    pub repeats: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Size of each buffer of the copy ceiling, in MiB.
    #[arg(long, default_value_t = 4096)]
    pub copy_mib: usize,
    /// Also time the naive kernel (one warp per token and head).
    #[arg(long)]
    pub naive: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn bench_attention(args: BenchAttentionArgs) -> Result<i32> {
    if args.device.require_built()? == DeviceKind::Cpu {
        return Err(KpgError::InvalidArgument(
            "the attention benchmark times the CUDA kernels: use --device cuda".into(),
        ));
    }
    if args.batch == 0 || args.context == 0 || args.copy_mib == 0 {
        return Err(KpgError::InvalidArgument(
            "--batch, --context and --copy-mib must be positive".into(),
        ));
    }
    if args.repeats < 20 {
        return Err(KpgError::InvalidArgument(
            "--repeats must be at least 20 (the median of fewer is noise)".into(),
        ));
    }
    if args.mode == AttentionMode::Prefill && (args.chunk == 0 || args.chunk > args.context) {
        return Err(KpgError::InvalidArgument(format!(
            "--chunk must be from 1 to --context ({})",
            args.context
        )));
    }
    run(&args)
}

#[cfg(not(feature = "cuda"))]
fn run(_: &BenchAttentionArgs) -> Result<i32> {
    unreachable!("require_built refuses cuda in a build without the feature")
}

#[cfg(feature = "cuda")]
fn run(args: &BenchAttentionArgs) -> Result<i32> {
    use cudarc::driver::sys::CUevent_flags;
    use half::bf16;
    use serde_json::json;

    use crate::backend::cuda::attention::{AttentionShape, PagedAttention, SplitKv};
    use crate::backend::cuda::{CudaDevice, CudaResultExt};
    use crate::cli::print_line;
    use crate::selftest::random::{to_bf16, Rng};

    let split = match args.split.as_str() {
        "auto" => SplitKv::Auto,
        "never" => SplitKv::Never,
        n => match n.parse::<usize>() {
            Ok(p) if p > 0 => SplitKv::Partition(p),
            _ => {
                return Err(KpgError::InvalidArgument(format!(
                    "--split {n:?}: expected auto, never or a positive number of keys"
                )))
            }
        },
    };
    let dev = CudaDevice::new(args.gpu)?;
    let (b, l, bs) = (args.batch, args.context, args.block_size);
    let chunk = match args.mode {
        AttentionMode::Decode => 1,
        AttentionMode::Prefill => args.chunk,
    };
    let blocks_per_seq = l.div_ceil(bs);
    let num_blocks = b * blocks_per_seq;
    let slot_elems = args.kv_heads * args.head_dim;
    let cache_len = num_blocks * bs * slot_elems;
    let num_tokens = b * chunk;
    let row = args.heads * args.head_dim;
    let mut rng = Rng::new(args.seed);

    // Random block tables: a permutation of the physical blocks.
    let tables = rng.permutation(num_blocks);
    let (mut token_seq, mut token_pos) = (Vec::new(), Vec::new());
    for s in 0..b {
        for p in l - chunk..l {
            token_seq.push(s as u32);
            token_pos.push(p as u32);
        }
    }
    // The caches are tiled with one random pattern (generating gigabytes on the host is slow).
    let pattern = dev.upload(&to_bf16(&rng.vec(cache_len.min(1 << 22), 1.0)), "pattern")?;
    let fill = |what: &str| -> Result<cudarc::driver::CudaSlice<bf16>> {
        let mut buf = dev.alloc::<bf16>(cache_len, what)?;
        let mut at = 0;
        while at < cache_len {
            let n = pattern.len().min(cache_len - at);
            let mut dst = buf.slice_mut(at..at + n);
            dev.stream()
                .memcpy_dtod(&pattern.slice(..n), &mut dst)
                .during(|| format!("filling {what}"))?;
            at += n;
        }
        Ok(buf)
    };
    let k = fill("k cache")?;
    let v = fill("v cache")?;
    let q = dev.upload(&to_bf16(&rng.vec(num_tokens * row, 1.0)), "q")?;
    let seq_dev = dev.upload(&token_seq, "token_seq")?;
    let pos_dev = dev.upload(&token_pos, "token_pos")?;
    let tables_dev = dev.upload(&tables, "block_tables")?;
    let mut out = dev.alloc::<bf16>(num_tokens * row, "attention out")?;
    let shape = AttentionShape {
        num_tokens,
        num_seqs: b,
        num_heads: args.heads,
        num_kv_heads: args.kv_heads,
        head_dim: args.head_dim,
        block_size: bs,
        max_blocks_per_seq: blocks_per_seq,
        max_context: l,
    };
    let mut attention = PagedAttention::new();
    attention.set_split(split);
    let plan = attention.plan_for(&dev, &shape)?;
    // Larger than the L2 (50 MiB on an H200), written before each timed run so that no run
    // finds the previous run's keys in the cache.
    let mut flush = dev.alloc::<u8>(256 << 20, "L2 flush buffer")?;

    let ctx = dev.stream().context().clone();
    let new_event = || {
        ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .during(|| "creating a CUDA event".into())
    };
    let (start, end) = (new_event()?, new_event()?);
    // Median seconds of `run` over the repeats, after the warm-up.
    let mut time = |what: &str, run: &mut dyn FnMut() -> Result<()>| -> Result<(f64, f64)> {
        for _ in 0..args.warmup {
            run()?;
        }
        let mut ms = Vec::with_capacity(args.repeats);
        for _ in 0..args.repeats {
            dev.stream()
                .memset_zeros(&mut flush)
                .during(|| "flushing the L2".into())?;
            start
                .record(dev.stream())
                .during(|| format!("recording the start of {what}"))?;
            run()?;
            end.record(dev.stream())
                .during(|| format!("recording the end of {what}"))?;
            ms.push(start.elapsed_ms(&end).during(|| format!("timing {what}"))? as f64);
        }
        ms.sort_by(f64::total_cmp);
        Ok((ms[ms.len() / 2] / 1e3, ms[0] / 1e3))
    };

    let (seconds, seconds_min) = time("paged attention", &mut || {
        attention.forward(
            &dev,
            &mut out.as_view_mut(),
            &q.as_view(),
            &k.as_view(),
            &v.as_view(),
            &seq_dev.as_view(),
            &pos_dev.as_view(),
            &tables_dev.as_view(),
            &shape,
        )
    })?;
    let naive_seconds = if args.naive {
        Some(
            time("naive paged attention", &mut || {
                attention.forward_naive(
                    &dev,
                    &mut out.as_view_mut(),
                    &q.as_view(),
                    &k.as_view(),
                    &v.as_view(),
                    &seq_dev.as_view(),
                    &pos_dev.as_view(),
                    &tables_dev.as_view(),
                    &shape,
                )
            })?
            .0,
        )
    } else {
        None
    };
    drop((k, v));

    let copy_len = args.copy_mib << 20;
    let src = dev.alloc::<u8>(copy_len, "copy source")?;
    let mut dst = dev.alloc::<u8>(copy_len, "copy destination")?;
    let (copy_seconds, _) = time("the device-to-device copy", &mut || {
        dev.stream()
            .memcpy_dtod(&src, &mut dst)
            .during(|| "copying device to device".into())
    })?;
    dev.synchronize("the benchmark")?;

    // Keys and values each sequence's context holds, read once per KV head.
    let kv_bytes = 2 * b * l * slot_elems * std::mem::size_of::<bf16>();
    // Score and value products: 2 · 2 · head_dim flops per (token, head, visible key).
    let visible: usize = token_pos.iter().map(|&p| p as usize + 1).sum();
    let flops = 4 * visible * row;
    let copy_bytes = 2 * copy_len; // read and written
    let gbps = kv_bytes as f64 / seconds / 1e9;
    let copy_gbps = copy_bytes as f64 / copy_seconds / 1e9;
    print_line(
        &json!({
            "bench": "attention",
            "device": dev.describe()?,
            "mode": match args.mode {
                AttentionMode::Decode => "decode",
                AttentionMode::Prefill => "prefill",
            },
            "batch": b,
            "context": l,
            "chunk": chunk,
            "heads": args.heads,
            "kv_heads": args.kv_heads,
            "head_dim": args.head_dim,
            "block_size": bs,
            "plan": {
                "kernel": plan.kernel_name(),
                "splits": plan.num_splits,
                "partition": plan.partition,
                "tile_tokens": plan.tile_tokens,
                "grid": [plan.grid.0, plan.grid.1, plan.grid.2],
            },
            "repeats": args.repeats,
            "seconds": seconds,
            "seconds_min": seconds_min,
            "kv_bytes": kv_bytes,
            "gbps": gbps,
            "tflops": flops as f64 / seconds / 1e12,
            "tokens_per_s": num_tokens as f64 / seconds,
            "naive_seconds": naive_seconds,
            "copy_bytes": copy_bytes,
            "copy_seconds": copy_seconds,
            "copy_gbps": copy_gbps,
            "share_of_copy": gbps / copy_gbps,
        })
        .to_string(),
    )?;
    Ok(0)
}
