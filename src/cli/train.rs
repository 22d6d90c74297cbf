//! `kpg train generator` (and the dispatch to `kpg train selector`): arguments, their validation into [`TrainOptions`], and the progress
//! line on stderr (redrawn in place on a terminal, a plain line every ten seconds otherwise).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Subcommand};

use super::AssignMethodArg;

use crate::error::{KpgError, Result};
use crate::model::one2set_config::One2SetConfig;
use crate::synth::one2set::one2set_preset;
use crate::train_generator::options::TrainOptions;
use crate::train_generator::run::{train, Progress};

#[derive(Subcommand, Debug)]
pub enum TrainCommand {
    /// Train a One2Set generator with optimal-transport (or Hungarian) target assignment.
    ///
    /// Reads corpora in the shared data format (`{"id", "title", "abstract", "keyphrases"}`, .gz
    /// allowed) and writes a generator directory that `kpg generate` loads (the best model by
    /// validation loss), a checkpoint, `train_log.csv` and `train.json`. Killed, it resumes from
    /// its last checkpoint when the same command is run again. Deterministic for a seed.
    Generator(TrainGeneratorArgs),
    /// Train a selector: a LoRA adapter on a frozen LLaMA model (a Hugging Face directory or a
    /// GGUF file), on labelled candidates (`kpg selector-data`), on the CPU.
    ///
    /// The loss is the cross-entropy of the label tokens only, with true and false labels
    /// weighted to half the loss each; candidates are shown in a random order while training
    /// (R-tuning) and by score when validating and selecting (S-infer). Writes a selector
    /// directory: the adapter in peft's format, kpg_selector.json naming the base model, a
    /// checkpoint, train_log.csv and train.json. Deterministic for a seed; --max-steps stops
    /// early and --resume continues bit for bit.
    Selector(super::train_selector::TrainSelectorArgs),
}

#[derive(Args, Debug)]
pub struct TrainGeneratorArgs {
    /// Training corpora (JSON lines; several allowed).
    #[arg(long, num_args = 1.., required = true)]
    pub train: Vec<PathBuf>,
    /// Leave out the training record with this id (repeatable), e.g. the acmcr record that
    /// duplicates a Krapivin test document (`../shared/data/README.md`).
    #[arg(long)]
    pub exclude_id: Vec<String>,
    /// Validation corpus; the best model is the one with the lowest loss on it.
    #[arg(long)]
    pub valid: PathBuf,
    /// Output directory: the generator, its checkpoint and logs. Rerunning into it resumes.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub size: ModelSizeArgs,
    /// Use this tokenizer.json (e.g. from `kpg vocab`) instead of building one from --train.
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// Start from this generator directory's weights instead of random ones (a fresh optimiser):
    /// to continue training a model whose checkpoint is gone, e.g. `models/generator`. The sizes
    /// must be that model's; its tokenizer.json is the vocabulary unless --vocab is given.
    #[arg(long)]
    pub init_from: Option<PathBuf>,
    /// How targets are matched to control codes.
    #[arg(long, value_enum, default_value = "ot")]
    pub assign: AssignMethodArg,
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    /// Documents per optimiser step.
    #[arg(long, default_value_t = 12)]
    pub batch_size: usize,
    /// Adam's learning rate (betas 0.9/0.998, eps 1e-9 as One2Set).
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Learning-rate factor after a validation without improvement.
    #[arg(long, default_value_t = 0.5)]
    pub lr_decay: f64,
    /// Stop after this many validations in a row without improvement (0: never).
    #[arg(long, default_value_t = 0)]
    pub patience: usize,
    #[arg(long, default_value_t = 0.1)]
    pub dropout: f64,
    /// Gradient-norm clipping threshold.
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Validate, keep the best model and checkpoint every this many steps (and each epoch's end).
    #[arg(long, default_value_t = 1000)]
    pub valid_every: usize,
    /// Validation documents used (the first ones).
    #[arg(long, default_value_t = 1000)]
    pub valid_docs: usize,
    /// Stop after this many optimiser steps in all (a time budget in steps).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Write a training-loss row to train_log.csv every this many steps.
    #[arg(long, default_value_t = 50)]
    pub log_every: usize,
}

/// The generator's sizes: a preset, optionally with some sizes overridden.
#[derive(Args, Debug)]
pub struct ModelSizeArgs {
    /// Model size: tiny (tests), small (d 256, 3+3 layers, 20,000 words), base (One2Set's).
    #[arg(long, default_value = "small")]
    pub preset: String,
    /// Override the preset's d_model.
    #[arg(long)]
    pub d_model: Option<usize>,
    /// Override the preset's attention heads.
    #[arg(long)]
    pub heads: Option<usize>,
    /// Override the preset's feed-forward width.
    #[arg(long)]
    pub ffn_dim: Option<usize>,
    /// Override the preset's encoder and decoder layers (each).
    #[arg(long)]
    pub layers: Option<usize>,
    /// Override the preset's vocabulary size (an upper bound: a smaller corpus gives fewer words).
    #[arg(long)]
    pub vocab_size: Option<usize>,
}

impl ModelSizeArgs {
    /// The config these sizes give, through the config's own checks (divisible heads, even
    /// d_model, room for the special tokens).
    pub fn config(&self) -> Result<One2SetConfig> {
        let mut config = one2set_preset(&self.preset)?;
        config.d_model = self.d_model.unwrap_or(config.d_model);
        config.num_heads = self.heads.unwrap_or(config.num_heads);
        config.ffn_dim = self.ffn_dim.unwrap_or(config.ffn_dim);
        if let Some(l) = self.layers {
            (config.encoder_layers, config.decoder_layers) = (l, l);
        }
        config.vocab_size = self.vocab_size.unwrap_or(config.vocab_size);
        One2SetConfig::from_json(&config.to_json(), Path::new("<model size options>"))
    }
}

impl TrainGeneratorArgs {
    fn options(&self) -> Result<TrainOptions> {
        let config = self.size.config()?;
        let positive = |name: &str, v: usize| {
            if v == 0 {
                Err(KpgError::InvalidArgument(format!(
                    "--{name} must be positive"
                )))
            } else {
                Ok(())
            }
        };
        positive("epochs", self.epochs)?;
        positive("batch-size", self.batch_size)?;
        positive("valid-every", self.valid_every)?;
        positive("valid-docs", self.valid_docs)?;
        positive("log-every", self.log_every)?;
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(KpgError::InvalidArgument("--lr must be positive".into()));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(KpgError::InvalidArgument(
                "--dropout must be in [0, 1)".into(),
            ));
        }
        if !(self.lr_decay > 0.0 && self.lr_decay <= 1.0) {
            return Err(KpgError::InvalidArgument(
                "--lr-decay must be in (0, 1]".into(),
            ));
        }
        Ok(TrainOptions {
            train: self.train.clone(),
            exclude_ids: self.exclude_id.clone(),
            valid: self.valid.clone(),
            out: self.out.clone(),
            config,
            // A warm start reads its model's own vocabulary unless told otherwise.
            vocab: self.vocab.clone().or_else(|| {
                self.init_from
                    .as_deref()
                    .map(crate::one2set::vocab::tokenizer_path)
            }),
            init_from: self.init_from.clone(),
            assign: self.assign.into(),
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            lr_decay: self.lr_decay,
            patience: self.patience,
            dropout: self.dropout,
            max_grad_norm: self.max_grad_norm,
            seed: self.seed,
            valid_every: self.valid_every,
            valid_docs: self.valid_docs,
            max_steps: self.max_steps,
            log_every: self.log_every,
        })
    }
}

pub fn run(cmd: TrainCommand) -> Result<i32> {
    let args = match cmd {
        TrainCommand::Generator(args) => args,
        TrainCommand::Selector(args) => return super::train_selector::run(args),
    };
    let opts = args.options()?;
    let terminal = std::io::stderr().is_terminal();
    let mut last_line = Instant::now();
    let start = Instant::now();
    let mut start_step = None;
    let mut valid = None;
    let summary = train(&opts, |p: &Progress| {
        let s = p.state;
        let first = *start_step.get_or_insert(s.step - 1);
        valid = p.valid_loss.or(valid);
        let done = s.step - first;
        let eta = start.elapsed().as_secs_f64() / done as f64 * (p.total_steps - s.step) as f64;
        let line = format!(
            "step {}/{} epoch {} loss {:.4} valid {} {:.1} examples/s ETA {}",
            s.step,
            p.total_steps,
            s.epoch + 1,
            p.loss,
            valid.map_or("-".to_string(), |v| format!("{v:.4}")),
            p.examples_per_s,
            clock(eta)
        );
        if terminal {
            let width = 30;
            let filled = width * s.step / p.total_steps.max(1);
            eprint!(
                "\r[{}{}] {line}   ",
                "#".repeat(filled),
                "-".repeat(width - filled)
            );
            let _ = std::io::stderr().flush();
        } else if last_line.elapsed().as_secs() >= 10 || p.valid_loss.is_some() {
            last_line = Instant::now();
            eprintln!("kpg train: {line}");
        }
    })?;
    if terminal {
        eprintln!();
    }
    eprintln!(
        "kpg train: {} steps{}, best validation loss {} at step {}, {:.0} s; the generator is in {}",
        summary.steps,
        summary
            .resumed_from
            .map_or(String::new(), |s| format!(" (resumed at {s})")),
        summary
            .best_valid_loss
            .map_or("-".to_string(), |v| format!("{v:.4}")),
        summary.best_step.map_or("-".to_string(), |s| s.to_string()),
        summary.elapsed_s,
        opts.out.display()
    );
    Ok(0)
}

fn clock(secs: f64) -> String {
    if !secs.is_finite() {
        return "-".into();
    }
    let s = secs as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}
