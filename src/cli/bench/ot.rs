//! `kpg bench ot`: training's target assignment (OT or Hungarian) on random problems shaped like a
//! training batch's document halves, in problems/s. `--dump` writes the problems in `kpg debug ot`'s
//! input format, so that the NumPy peer (`tools/peer_ot.py`) solves exactly the same ones;
//! `assign_sum` (the sum of every assigned target index) lets the two outputs be compared.
//! `--device cuda` times kernels/sinkhorn.cu on the same problems (tools/peer_ot_torch.py is its
//! batched PyTorch peer) and counts the slots whose assignment differs from the CPU's.

use std::time::Instant;

use serde_json::json;

use crate::assign::random::random_problem;
use crate::assign::{assign_batch, OtParams, OwnedProblem, Problem};
use crate::backend::DeviceKind;
use crate::cli::debug_ot::{InputProblem, OtInput};
use crate::cli::{print_line, AssignMethodArg, BenchOtArgs};
use crate::error::{KpgError, Result};

pub fn bench_ot(args: BenchOtArgs) -> Result<i32> {
    let device = args.device.require_built()?;
    if args.problems == 0 || args.targets == 0 || args.slots == 0 || args.repeats == 0 {
        return Err(KpgError::InvalidArgument(
            "--problems, --targets, --slots and --repeats must be at least 1".into(),
        ));
    }
    if device == DeviceKind::Cuda && args.method != AssignMethodArg::Ot {
        return Err(KpgError::InvalidArgument(
            "--device cuda solves the OT assignment only; use --method ot or --device cpu".into(),
        ));
    }
    let owned: Vec<OwnedProblem> = (0..args.problems)
        .map(|i| random_problem(args.seed, i, args.targets, args.slots))
        .collect();
    let problems: Vec<Problem> = owned.iter().map(OwnedProblem::view).collect();
    let params = OtParams::default();
    let method = args.method.into();
    // Warm-up on the CPU (threads started, pages touched), and the reference for --device cuda.
    let results = assign_batch(&problems, method, &params)?;
    if let Some(path) = &args.dump {
        let input = OtInput {
            tau: Some(params.tau),
            top_k: Some(params.top_k),
            eps: Some(params.eps),
            iters: Some(params.iters),
            problems: owned
                .iter()
                .map(|p| InputProblem {
                    score: p.score.chunks(args.slots).map(<[f64]>::to_vec).collect(),
                    has_null: p.has_null,
                })
                .collect(),
        };
        let text = serde_json::to_string(&input).expect("plain values");
        std::fs::write(path, text).map_err(|e| KpgError::io(path, e))?;
    }
    let with_null = owned.iter().filter(|p| p.has_null).count();
    let rows: usize = owned.iter().map(|p| p.targets).sum();
    let n = args.problems as f64;
    let mut out = json!({
        "bench": "ot",
        "device": match device {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
        },
        "method": match args.method {
            AssignMethodArg::Ot => "ot",
            AssignMethodArg::Hungarian => "hungarian",
        },
        "problems": args.problems,
        "max_targets": args.targets,
        "slots": args.slots,
        "seed": args.seed,
        "mean_targets": rows as f64 / n,
        "has_null_share": with_null as f64 / n,
        "tau": params.tau,
        "top_k": params.top_k,
        "eps": params.eps,
        "iters": params.iters,
    });
    let timing = match device {
        DeviceKind::Cpu => {
            let mut best = f64::INFINITY;
            for _ in 0..args.repeats {
                let start = Instant::now();
                std::hint::black_box(assign_batch(&problems, method, &params)?);
                best = best.min(start.elapsed().as_secs_f64());
            }
            let assign_sum: usize = results
                .iter()
                .map(|r| r.assign().iter().sum::<usize>())
                .sum();
            json!({
                "threads": rayon::current_num_threads(),
                "seconds": best,
                "problems_per_s": n / best,
                "assign_sum": assign_sum,
            })
        }
        DeviceKind::Cuda => time_cuda(&args, &problems, &params, &results)?,
    };
    let obj = out.as_object_mut().expect("an object");
    obj.extend(timing.as_object().expect("an object").clone());
    print_line(&out.to_string())?;
    Ok(0)
}

/// The median of `x` (sorted in place).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn median(x: &mut [f64]) -> f64 {
    x.sort_by(f64::total_cmp);
    let m = x.len() / 2;
    if x.len() % 2 == 1 {
        x[m]
    } else {
        0.5 * (x[m - 1] + x[m])
    }
}

/// Times kernels/sinkhorn.cu on the batch: the kernel alone (CUDA events, median of --repeats
/// after a warm-up), the whole call with host packing and transfers (median, host clock after the
/// download's synchronisation), and a 256 MiB device-to-device copy for the memory-bound floor.
#[cfg(feature = "cuda")]
fn time_cuda(
    args: &BenchOtArgs,
    problems: &[Problem],
    params: &OtParams,
    cpu: &[crate::assign::Assignment],
) -> Result<serde_json::Value> {
    use crate::backend::cuda::sinkhorn::SinkhornWorkspace;
    use crate::backend::cuda::{CudaDevice, CudaResultExt};
    use cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT;

    const WARMUP: usize = 3;
    const COPY_FLOATS: usize = 64 << 20;
    let dev = CudaDevice::new(args.gpu)?;
    let stream = dev.stream().clone();
    let event = || {
        stream
            .record_event(Some(CU_EVENT_DEFAULT))
            .during(|| "recording a CUDA event".into())
    };
    let mut ws = SinkhornWorkspace::default();
    ws.prepare(&dev, problems)?;
    for _ in 0..WARMUP {
        ws.launch(&dev, params)?;
    }
    dev.synchronize("the OT warm-up")?;
    let mut kernel = Vec::with_capacity(args.repeats);
    for _ in 0..args.repeats {
        let start = event()?;
        ws.launch(&dev, params)?;
        let end = event()?;
        let ms = start
            .elapsed_ms(&end)
            .during(|| "timing sinkhorn_ot_f64".into())?;
        kernel.push(ms as f64 / 1e3);
    }
    let results = ws.results(&dev)?;
    let bytes = ws.bytes_moved();
    let layout = ws.layout().clone();
    let mut full = Vec::with_capacity(args.repeats);
    for _ in 0..args.repeats {
        let start = Instant::now();
        ws.prepare(&dev, problems)?;
        ws.launch(&dev, params)?;
        std::hint::black_box(ws.results(&dev)?);
        full.push(start.elapsed().as_secs_f64());
    }

    let src = dev.alloc::<f32>(COPY_FLOATS, "the bandwidth probe's source")?;
    let mut dst = dev.alloc::<f32>(COPY_FLOATS, "the bandwidth probe's destination")?;
    let mut copy = Vec::new();
    for k in 0..WARMUP + 10 {
        let start = event()?;
        stream
            .memcpy_dtod(&src, &mut dst)
            .during(|| "copying 256 MiB on the device".into())?;
        let end = event()?;
        let ms = start
            .elapsed_ms(&end)
            .during(|| "timing the device copy".into())?;
        if k >= WARMUP {
            copy.push(ms as f64 / 1e3);
        }
    }
    // A copy reads and writes every byte.
    let copy_bw = 2.0 * (COPY_FLOATS * 4) as f64 / median(&mut copy);

    let mismatched_slots: usize = results
        .iter()
        .zip(cpu)
        .map(|(g, c)| {
            g.assign
                .iter()
                .zip(c.assign())
                .filter(|(a, b)| a != b)
                .count()
        })
        .sum();
    let assign_sum: usize = results.iter().map(|r| r.assign.iter().sum::<usize>()).sum();
    let n = problems.len() as f64;
    let kernel_min = kernel.iter().copied().fold(f64::INFINITY, f64::min);
    let kernel_s = median(&mut kernel);
    let full_s = median(&mut full);
    let floor_s = bytes as f64 / copy_bw;
    Ok(json!({
        "gpu": dev.describe()?,
        "blocks": layout.blocks(),
        "block_dim": layout.block_dim,
        "shared_bytes": layout.shared_bytes(),
        "repeats": args.repeats,
        "seconds": kernel_s,
        "seconds_min": kernel_min,
        "problems_per_s": n / kernel_s,
        "seconds_with_transfers": full_s,
        "problems_per_s_with_transfers": n / full_s,
        "bytes": bytes,
        "copy_bytes_per_s": copy_bw,
        "floor_seconds": floor_s,
        "floor_share": floor_s / kernel_s,
        "assign_sum": assign_sum,
        "slots_differing_from_cpu": mismatched_slots,
    }))
}

#[cfg(not(feature = "cuda"))]
fn time_cuda(
    _: &BenchOtArgs,
    _: &[Problem],
    _: &OtParams,
    _: &[crate::assign::Assignment],
) -> Result<serde_json::Value> {
    unreachable!("require_built refuses cuda in a build without the feature")
}
