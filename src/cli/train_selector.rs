//! `kpg train selector`: arguments into [`SelectorTrainOptions`], and a progress line on stderr
//! (every step on a terminal, every ten seconds and at each validation otherwise).

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use crate::error::Result;
use crate::select::train::lora_params::LoraShape;
use crate::select::train::run::{train, Progress, SelectorTrainOptions};

#[derive(Args, Debug)]
pub struct TrainSelectorArgs {
    /// The frozen LLaMA model the adapter is trained on: a Hugging Face directory or a GGUF file.
    #[arg(long)]
    pub base: PathBuf,
    /// Labelled records (`kpg selector-data`): `{"id", "title", "abstract", "candidates":
    /// [{"phrase", "score", "label"}]}`, .gz allowed.
    #[arg(long)]
    pub train: PathBuf,
    /// Labelled validation records: the adapter kept is the one with the lowest balanced loss on
    /// them (the last one without).
    #[arg(long)]
    pub valid: Option<PathBuf>,
    /// Output: a selector directory (`kpg select --selector OUT`) with the adapter in peft's
    /// format, its checkpoint and logs.
    #[arg(long, alias = "adapter-out")]
    pub out: PathBuf,
    /// A kpg_selector.json to train with; the default template with interleaved answers
    /// (each candidate restated before its label) otherwise.
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    /// LoRA alpha (the update is scaled by alpha / rank, or alpha / √rank with --rslora).
    #[arg(long, default_value_t = 16.0)]
    pub alpha: f64,
    #[arg(long)]
    pub rslora: bool,
    /// The projections that get an adapter: a comma-separated list of q_proj, k_proj, v_proj,
    /// o_proj, gate_proj, up_proj, down_proj, or `all`.
    #[arg(long, default_value = "all")]
    pub targets: String,
    /// Peak learning rate (AdamW, betas 0.9/0.999, eps 1e-8).
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    /// Steps of linear warm-up; the rate then falls linearly to zero at the last step.
    #[arg(long, default_value_t = 20)]
    pub warmup_steps: u64,
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Records per optimiser step.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Gradient-norm clipping threshold.
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Tokens of a training sequence; labels past it are not scored.
    #[arg(long, default_value_t = 768)]
    pub max_tokens: usize,
    /// The highest-scored candidates of a record that are shown.
    #[arg(long, default_value_t = 15)]
    pub max_candidates: usize,
    /// Show candidates by score while training too (the default shuffles them: R-tuning).
    #[arg(long)]
    pub sorted_candidates: bool,
    /// The loss weight of a redundant false label (a candidate that is not a keyphrase and shares
    /// a stemmed token with an earlier true one in the sequence) against a plain false label, within
    /// the false half of the balanced loss: above 1 it teaches the selector to drop candidates
    /// that repeat a kept one.
    #[arg(long, default_value_t = 1.0)]
    pub redundant_false_weight: f64,
    /// Validation records used (the first ones).
    #[arg(long, default_value_t = 200)]
    pub max_valid: usize,
    /// Validate every this many steps (and at the last).
    #[arg(long, default_value_t = 50)]
    pub valid_every: u64,
    /// Checkpoint every this many steps (and at the last).
    #[arg(long, default_value_t = 10)]
    pub checkpoint_every: u64,
    /// Stop after this many steps of this run, with a checkpoint, to continue later with --resume.
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Continue the checkpoint in --out, bit for bit as if the run had not stopped.
    #[arg(long)]
    pub resume: bool,
}

impl TrainSelectorArgs {
    fn options(&self) -> Result<SelectorTrainOptions> {
        Ok(SelectorTrainOptions {
            base: self.base.clone(),
            template: self.template.clone(),
            train: self.train.clone(),
            valid: self.valid.clone(),
            out: self.out.clone(),
            lora: LoraShape {
                rank: self.rank,
                alpha: self.alpha,
                rslora: self.rslora,
                targets: LoraShape::parse_targets(&self.targets)?,
            },
            lr: self.lr,
            warmup_steps: self.warmup_steps,
            epochs: self.epochs,
            batch_size: self.batch_size,
            weight_decay: self.weight_decay,
            max_grad_norm: self.max_grad_norm,
            seed: self.seed,
            max_tokens: self.max_tokens,
            max_candidates: self.max_candidates,
            shuffle_candidates: !self.sorted_candidates,
            redundant_false_weight: self.redundant_false_weight,
            max_valid: self.max_valid,
            valid_every: self.valid_every,
            checkpoint_every: self.checkpoint_every,
            max_steps: self.max_steps,
            resume: self.resume,
        })
    }
}

pub fn run(args: TrainSelectorArgs) -> Result<i32> {
    if args.rank == 0 {
        return Err(crate::error::KpgError::InvalidArgument(
            "--rank must be at least 1".into(),
        ));
    }
    if !(args.redundant_false_weight.is_finite() && args.redundant_false_weight > 0.0) {
        return Err(crate::error::KpgError::InvalidArgument(format!(
            "--redundant-false-weight must be a positive number, got {}",
            args.redundant_false_weight
        )));
    }
    let opts = args.options()?;
    let mut last_line: Option<Instant> = None;
    let summary = train(&opts, |p: &Progress| {
        let line = format!(
            "step {}/{} epoch {} loss {:.4} grad-norm {:.3} lr {:.2e} {:.0} tokens/s {:.2} records/s{}",
            p.step,
            p.total_steps,
            p.epoch + 1,
            p.loss,
            p.grad_norm,
            p.lr,
            p.tokens_per_s,
            p.examples_per_s,
            p.valid.map_or(String::new(), |v| format!(
                " | valid loss {:.4} balanced accuracy {:.3} ({} labels)",
                v.loss, v.balanced_accuracy, v.labels
            ))
        );
        if p.valid.is_some() || last_line.is_none_or(|t| t.elapsed().as_secs() >= 10) {
            last_line = Some(Instant::now());
            eprintln!("kpg train selector: {line}");
        }
    })?;
    eprintln!(
        "kpg train selector: {} of {} steps{}, {} records ({} skipped), best validation loss {} \
         at step {}, {:.0} s in all; the selector is in {}",
        summary.steps,
        summary.total_steps,
        if summary.finished {
            " (done)"
        } else {
            " (continue with --resume)"
        },
        summary.train_records,
        summary.skipped_records,
        summary
            .best_valid
            .map_or("-".to_string(), |v| format!("{v:.4}")),
        summary.best_step.map_or("-".to_string(), |s| s.to_string()),
        summary.elapsed_s,
        opts.out.display()
    );
    Ok(0)
}
