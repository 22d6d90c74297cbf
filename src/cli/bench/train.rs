//! `kpg bench train`: training throughput on real documents, and one step's time split into its
//! phases: the K-step greedy scoring (a no-grad forward), the assignment, the forward and backward
//! of the loss, and the optimiser (clipping and Adam). The forward is timed as a separate no-grad
//! teacher-forced pass over the same batch, and the backward as what `loss_backward` takes beyond
//! it, so the two add up to the loss's real cost. One JSON line on stdout.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde_json::json;

use crate::autodiff::{
    clip_grad_norm, forward_dists, loss_backward, Adam, Dropout, Params, TrainWorkspace,
};
use crate::cli::print_line;
use crate::cli::train::ModelSizeArgs;
use crate::cli::AssignMethodArg;
use crate::error::{KpgError, Result};
use crate::train_generator::data::TrainExample;
use crate::train_generator::data::{
    build_vocab, read_records, to_example, ExampleLimits, ReadStats,
};
use crate::train_generator::step::{prepare_batch, source_batch};
use crate::train_generator::targets::{document_targets, AssignMethod};

#[derive(Args, Debug)]
pub struct BenchTrainArgs {
    /// Training documents in the shared data format (e.g. ../shared/data/acmcr.train.jsonl.gz);
    /// the first --steps × --batch-size usable ones are read.
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub size: ModelSizeArgs,
    #[arg(long, value_enum, default_value = "ot")]
    pub assign: AssignMethodArg,
    #[arg(long, default_value_t = 12)]
    pub batch_size: usize,
    /// Timed steps, after one warm-up step.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    #[arg(long, default_value_t = 0.1)]
    pub dropout: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write every step's batch (sources and per-half targets, as JSON lines with the config) here,
    /// for the PyTorch peer tools/peer_train.py to run the same steps.
    #[arg(long)]
    pub dump: Option<PathBuf>,
}

pub fn bench_train(args: BenchTrainArgs) -> Result<i32> {
    let mut config = args.size.config()?;
    if args.batch_size == 0 || args.steps == 0 {
        return Err(KpgError::InvalidArgument(
            "--batch-size and --steps must be positive".into(),
        ));
    }
    let mut stats = ReadStats::default();
    let records = read_records(std::slice::from_ref(&args.data), &mut stats)?;
    let vocab = build_vocab(&records, config.vocab_size);
    config.vocab_size = config.vocab_size.min(vocab.len());
    let limits = ExampleLimits {
        vocab_size: config.vocab_size,
        max_keyphrase_len: config.max_keyphrase_len,
        max_source_tokens: crate::train_generator::data::MAX_TRAIN_SOURCE_TOKENS,
    };
    let needed = (args.steps + 1) * args.batch_size;
    let examples: Vec<_> = records
        .iter()
        .filter_map(|r| to_example(r, &vocab, limits, &mut stats))
        .take(needed)
        .collect();
    if examples.len() < needed {
        return Err(KpgError::InvalidArgument(format!(
            "{} has {} usable documents; --steps {} with --batch-size {} need {needed}",
            args.data.display(),
            examples.len(),
            args.steps,
            args.batch_size
        )));
    }
    let method: AssignMethod = args.assign.into();
    if let Some(path) = &args.dump {
        dump_batches(path, &examples, args.batch_size, &config, method)?;
    }
    let mut params = Params::<f32>::init(&config, args.seed);
    let mut grads = params.zeros_like();
    let mut adam = Adam::new(&params);
    let mut ws = TrainWorkspace::new();
    let (mut score, mut assign, mut forward, mut loss_total, mut optim) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let mut target_tokens = 0usize;
    let mut total = 0.0;
    for (step, batch) in examples.chunks(args.batch_size).enumerate() {
        let start = Instant::now();
        let refs: Vec<_> = batch.iter().collect();
        let prepared = prepare_batch(&params, &refs, method, &mut ws)?;
        let t_fwd = Instant::now();
        forward_dists(&params, &prepared.batch, &mut ws)?;
        let t_loss = Instant::now();
        grads.fill_zero();
        let t = &prepared.targets;
        loss_backward(
            &params,
            &prepared.batch,
            &t.targets,
            &t.weights,
            t.tokens.max(1) as f32,
            Dropout {
                p: args.dropout,
                seed: step as u64,
            },
            &mut grads,
            &mut ws,
        )?;
        let t_opt = Instant::now();
        clip_grad_norm(&mut grads, 1.0);
        adam.step(&mut params, &grads);
        let end = Instant::now();
        if step == 0 {
            continue; // warm-up: workspaces grow, pages fault in
        }
        score += prepared.score_s;
        assign += prepared.assign_s;
        forward += (t_loss - t_fwd).as_secs_f64();
        loss_total += (t_opt - t_loss).as_secs_f64();
        optim += (end - t_opt).as_secs_f64();
        // The extra no-grad forward is not part of a training step.
        total += (end - start).as_secs_f64() - (t_loss - t_fwd).as_secs_f64();
        target_tokens += t.tokens;
    }
    let n = args.steps as f64;
    let ms = |s: f64| (s / n * 1e4).round() / 10.0;
    print_line(
        &json!({
            "bench": "train",
            "config": config.to_json(),
            "parameters": params.num_params(),
            "assign": format!("{method:?}").to_lowercase(),
            "batch_size": args.batch_size,
            "steps": args.steps,
            "threads": rayon::current_num_threads(),
            "examples_per_s": (args.steps * args.batch_size) as f64 / total,
            "target_tokens_per_step": target_tokens as f64 / n,
            "step_ms": ms(total),
            "split_ms": {
                "assignment_scoring": ms(score),
                "assignment_solve": ms(assign),
                "forward": ms(forward),
                "backward": ms(loss_total - forward),
                "optimiser": ms(optim),
            },
        })
        .to_string(),
    )?;
    Ok(0)
}

/// One JSON line per step: the config, the method, the packed sources and every document half's
/// target sequences (`crate::train_generator::targets::document_targets`).
fn dump_batches(
    path: &std::path::Path,
    examples: &[TrainExample],
    batch_size: usize,
    config: &crate::model::one2set_config::One2SetConfig,
    method: AssignMethod,
) -> Result<()> {
    let mut text = String::new();
    for batch in examples.chunks(batch_size) {
        let refs: Vec<&TrainExample> = batch.iter().collect();
        let b = source_batch(&refs, config);
        let halves: Vec<_> = batch
            .iter()
            .flat_map(|e| {
                document_targets(
                    e,
                    config.num_control_codes,
                    config.num_present_codes,
                    config.max_keyphrase_len,
                )
            })
            .map(|h| json!({"sequences": h.sequences, "has_null": h.has_null}))
            .collect();
        text.push_str(
            &json!({
                "config": config.to_json(),
                "assign": format!("{method:?}").to_lowercase(),
                "src": b.src,
                "doc_lens": b.doc_lens,
                "src_ext": b.src_ext,
                "num_oov": b.num_oov,
                "halves": halves,
            })
            .to_string(),
        );
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| KpgError::io(path, e))
}
