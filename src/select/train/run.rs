//! The training loop of `kpg train selector`: batches of labelled records, the class-balanced
//! loss, AdamW under a warm-up and linear-decay schedule, validation, checkpoints and `--resume`.
//!
//! The output directory is a selector directory (`kpg select --selector OUT`): the adapter with
//! the lowest validation loss (the last one without validation), `kpg_selector.json` (the template
//! trained with, and `base_model`), `checkpoint/` (the last step's adapter, optimiser state and
//! `state.json`), `train_log.csv` and `train.json`. Everything that decides the result comes from
//! the options and the seed: the epoch order, each record's candidate order and the batches are
//! functions of (seed, epoch, record), so a resumed run takes the same steps with the same
//! numbers as one that was never stopped.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::base::BaseModel;
use super::examples::{build_sequence, by_score, label_weights, read_labelled, LabelledDocument};
use super::lora_params::{LoraParams, LoraShape};
use super::model::{forward, loss_backward};
use super::ops::weighted_cross_entropy;
use super::optim::{clip_grad_norm, scheduled_lr, AdamW};
use crate::checkpoint::{find_checkpoint, save_checkpoint, write_atomic};
use crate::error::{KpgError, Result};
use crate::model::llama::Llama;
use crate::model::lora::LoraAdapter;
use crate::select::config::{AnswerFormat, SelectorConfig, SELECTOR_FILE};
use crate::select::Selector;
use crate::selftest::random::Rng;

#[derive(Debug, Clone, Serialize)]
pub struct SelectorTrainOptions {
    /// The frozen LLaMA model: a Hugging Face directory or a GGUF file.
    pub base: PathBuf,
    /// A `kpg_selector.json` to train with; the interleaved default template otherwise.
    pub template: Option<PathBuf>,
    pub train: PathBuf,
    pub valid: Option<PathBuf>,
    pub out: PathBuf,
    #[serde(skip)]
    pub lora: LoraShape,
    pub lr: f64,
    pub warmup_steps: u64,
    pub epochs: usize,
    /// Records per optimiser step.
    pub batch_size: usize,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    pub seed: u64,
    /// Tokens of a training sequence; labels beyond are not scored.
    pub max_tokens: usize,
    /// The highest-scored candidates of a record that are shown.
    pub max_candidates: usize,
    /// Candidates in a random order during training (the paper's R-tuning); by score otherwise.
    pub shuffle_candidates: bool,
    /// The loss weight of a redundant false label (a non-keyphrase sharing a token with an
    /// earlier true candidate) against a plain false one, within the false half of the loss.
    pub redundant_false_weight: f64,
    /// Validation records used (the first ones).
    pub max_valid: usize,
    pub valid_every: u64,
    pub checkpoint_every: u64,
    /// Stop after this many steps of this run (a session's share), checkpointing first.
    pub max_steps: Option<u64>,
    /// Continue the checkpoint in `out`.
    pub resume: bool,
}

impl SelectorTrainOptions {
    /// The options that decide the result; a resume with other ones is refused.
    fn fingerprint(&self) -> serde_json::Value {
        let mut fingerprint = json!({
            "template": self.template, "train": self.train, "lr": self.lr,
            "warmup_steps": self.warmup_steps, "epochs": self.epochs,
            "batch_size": self.batch_size, "weight_decay": self.weight_decay,
            "max_grad_norm": self.max_grad_norm, "seed": self.seed,
            "max_tokens": self.max_tokens, "max_candidates": self.max_candidates,
            "shuffle_candidates": self.shuffle_candidates, "rank": self.lora.rank,
            "alpha": self.lora.alpha, "rslora": self.lora.rslora,
            "targets": self.lora.targets,
        });
        // Only where it is not 1, so that the runs from before the option still resume.
        if self.redundant_false_weight != 1.0 {
            fingerprint["redundant_false_weight"] = json!(self.redundant_false_weight);
        }
        fingerprint
    }
}

/// Where a run is (`checkpoint/state.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SelectorTrainState {
    pub step: u64,
    pub elapsed_s: f64,
    pub best_valid_loss: Option<f64>,
    pub best_step: Option<u64>,
    pub fingerprint: serde_json::Value,
}

/// A progress report: after every step, and with `valid` after a validation.
#[derive(Debug, Clone)]
pub struct Progress {
    pub step: u64,
    pub total_steps: u64,
    pub epoch: usize,
    pub loss: f64,
    pub grad_norm: f64,
    pub lr: f64,
    pub tokens_per_s: f64,
    pub examples_per_s: f64,
    pub valid: Option<Validation>,
}

/// Teacher-forced validation with candidates by score: the class-balanced loss
/// (½·mean CE of true labels + ½·mean CE of false ones) and balanced accuracy of the two-way
/// decision.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Validation {
    pub loss: f64,
    pub balanced_accuracy: f64,
    pub labels: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub steps: u64,
    pub total_steps: u64,
    pub finished: bool,
    pub train_records: usize,
    pub skipped_records: usize,
    pub best_valid: Option<f64>,
    pub best_step: Option<u64>,
    pub elapsed_s: f64,
}

/// The selector template to train with.
fn template(opts: &SelectorTrainOptions) -> Result<SelectorConfig> {
    match &opts.template {
        Some(path) => {
            let dir = path.parent().unwrap_or(Path::new("."));
            if path.file_name().is_some_and(|n| n == SELECTOR_FILE) {
                SelectorConfig::from_dir(dir)
            } else {
                Err(KpgError::InvalidArgument(format!(
                    "--template {}: give a file named {SELECTOR_FILE}",
                    path.display()
                )))
            }
        }
        None => Ok(SelectorConfig::for_format(AnswerFormat::Interleaved)),
    }
}

/// `target` as a path relative to directory `from` (both made absolute), so that a selector
/// directory and its base can move together.
fn relative_path(from: &Path, target: &Path) -> Result<String> {
    let abs = |p: &Path| p.canonicalize().map_err(|e| KpgError::io(p, e));
    let (from, target) = (abs(from)?, abs(target)?);
    let common = from
        .components()
        .zip(target.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut rel = PathBuf::new();
    for _ in from.components().skip(common) {
        rel.push("..");
    }
    for c in target.components().skip(common) {
        rel.push(c);
    }
    Ok(rel.to_string_lossy().into_owned())
}

/// The deterministic order of the records in `epoch`.
fn epoch_order(seed: u64, epoch: usize, n: usize) -> Vec<usize> {
    let mut rng = Rng::new(seed ^ (epoch as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
    rng.permutation(n).into_iter().map(|i| i as usize).collect()
}

/// The candidates shown for record `index` in `epoch`: the best `max` by score, shuffled when
/// training with R-tuning.
fn candidate_order(
    opts: &SelectorTrainOptions,
    doc: &LabelledDocument,
    epoch: usize,
    index: usize,
) -> Vec<usize> {
    let mut order = by_score(&doc.doc);
    order.truncate(opts.max_candidates);
    if opts.shuffle_candidates {
        let mut rng =
            Rng::new(opts.seed ^ ((epoch as u64) << 40) ^ (index as u64).wrapping_mul(0x9E37_79B9));
        let perm = rng.permutation(order.len());
        order = perm.into_iter().map(|i| order[i as usize]).collect();
    }
    order
}

struct Trainer<'a> {
    opts: &'a SelectorTrainOptions,
    selector: Selector,
    base: BaseModel<f32>,
}

impl Trainer<'_> {
    fn validate(&self, params: &LoraParams<f32>, docs: &[LabelledDocument]) -> Result<Validation> {
        let (mut ce, mut n, mut right) = ([0f64; 2], [0usize; 2], [0usize; 2]);
        let tok = self
            .selector
            .model
            .tokenizer
            .as_ref()
            .expect("a selector has one");
        for doc in docs.iter().take(self.opts.max_valid) {
            let mut order = by_score(&doc.doc);
            order.truncate(self.opts.max_candidates);
            let Ok(seq) = build_sequence(
                &self.selector.config,
                tok,
                doc,
                &order,
                self.opts.max_tokens,
            ) else {
                continue;
            };
            let tape = forward(&self.base, params, &seq.tokens, &seq.scored)?;
            let vocab = self.base.config.vocab_size;
            for (i, &label) in seq.labels.iter().enumerate() {
                let row = &tape.logits[i * vocab..(i + 1) * vocab];
                let mut logits = row.to_vec();
                let target = seq.scored.targets[i];
                let loss = weighted_cross_entropy(&mut logits, &[target], &[1.0]);
                let class = usize::from(!label);
                ce[class] += loss as f64;
                n[class] += 1;
                let [yes, no] = seq.label_ids[i];
                if (row[yes as usize] > row[no as usize]) == label {
                    right[class] += 1;
                }
            }
        }
        let mean = |c: usize, v: &[f64; 2]| if n[c] > 0 { v[c] / n[c] as f64 } else { 0.0 };
        let classes = n.iter().filter(|&&k| k > 0).count().max(1) as f64;
        let acc = [0, 1]
            .iter()
            .map(|&c| mean(c, &[right[0] as f64, right[1] as f64]))
            .sum::<f64>()
            / classes;
        Ok(Validation {
            loss: (mean(0, &ce) + mean(1, &ce)) / classes,
            balanced_accuracy: acc,
            labels: n[0] + n[1],
        })
    }
}

fn read_state(dir: &Path) -> Result<SelectorTrainState> {
    let path = dir.join("state.json");
    let text = std::fs::read_to_string(&path).map_err(|e| KpgError::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| KpgError::InputLine {
        path,
        line: 1,
        reason: format!("not a selector training state: {e}"),
    })
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("plain values serialise");
    write_atomic(path, text.as_bytes())
}

/// Trains, reporting each step to `progress`; returns where the run stopped.
pub fn train(opts: &SelectorTrainOptions, mut progress: impl FnMut(&Progress)) -> Result<Summary> {
    if opts.batch_size == 0 || opts.epochs == 0 || opts.max_candidates == 0 {
        return Err(KpgError::InvalidArgument(
            "--batch-size, --epochs and --max-candidates must be at least 1".into(),
        ));
    }
    let out = &opts.out;
    let checkpoint = find_checkpoint(out);
    if checkpoint.is_some() && !opts.resume {
        return Err(KpgError::InvalidArgument(format!(
            "{} holds a checkpoint: pass --resume to continue it, or choose another --out",
            out.display()
        )));
    }
    if checkpoint.is_none() && opts.resume {
        return Err(KpgError::InvalidArgument(format!(
            "--resume: {} holds no checkpoint",
            out.display()
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| KpgError::io(out, e))?;

    let model = Llama::load(&opts.base)?;
    let selector = Selector::from_model(model, template(opts)?, &opts.base)?;
    let m = &selector.model;
    let base = BaseModel::<f32>::from_files(&m.config, m.weights(), m.rope_inv_freq())?;
    let tok = selector
        .model
        .tokenizer
        .as_ref()
        .expect("a selector has one");

    // Records that cannot become a sequence at all are reported once and left out.
    let (mut docs, errors) = read_labelled(&opts.train)?;
    let mut skipped = errors.len();
    for e in &errors {
        eprintln!("kpg: {}: {e}; record skipped", opts.train.display());
    }
    docs.retain(|d| {
        let mut order = by_score(&d.doc);
        order.truncate(opts.max_candidates);
        match build_sequence(&selector.config, tok, d, &order, opts.max_tokens) {
            Ok(_) => true,
            Err(e) => {
                eprintln!(
                    "kpg: {} record {}: {e}; skipped",
                    opts.train.display(),
                    d.doc.id
                );
                skipped += 1;
                false
            }
        }
    });
    if docs.is_empty() {
        return Err(KpgError::InvalidArgument(format!(
            "{}: no usable training records",
            opts.train.display()
        )));
    }
    let valid = match &opts.valid {
        Some(path) => {
            let (v, errors) = read_labelled(path)?;
            for e in &errors {
                eprintln!("kpg: {}: {e}; record skipped", path.display());
            }
            v
        }
        None => Vec::new(),
    };

    let steps_per_epoch = docs.len().div_ceil(opts.batch_size) as u64;
    let total_steps = steps_per_epoch * opts.epochs as u64;
    let shape_of = |p: usize| base.projection_shape(p);
    let layers = base.layers.len();
    let (mut params, mut adam, mut state) = match &checkpoint {
        Some(dir) => {
            let state = read_state(dir)?;
            if let Some(field) =
                crate::checkpoint::fingerprint_difference(&state.fingerprint, &opts.fingerprint())
            {
                return Err(KpgError::InvalidArgument(format!(
                    "--resume: the checkpoint in {} was made with another `{field}`",
                    out.display()
                )));
            }
            let adapter = LoraAdapter::load(dir)?;
            let params = LoraParams::from_adapter(&adapter, opts.lora.clone(), layers, shape_of)?;
            let adam = AdamW::load(&dir.join("optimizer.safetensors"), &params)?;
            (params, adam, state)
        }
        None => {
            let params = LoraParams::init(opts.lora.clone(), layers, shape_of, opts.seed);
            let adam = AdamW::new(&params, opts.weight_decay);
            let state = SelectorTrainState {
                step: 0,
                elapsed_s: 0.0,
                best_valid_loss: None,
                best_step: None,
                fingerprint: opts.fingerprint(),
            };
            (params, adam, state)
        }
    };
    let trainer = Trainer {
        opts,
        selector,
        base,
    };
    let mut config = trainer.selector.config.clone();
    config.base_model = Some(relative_path(out, &opts.base)?);
    // The selector reads as many candidates as it was trained on.
    config.max_candidates = Some(opts.max_candidates);
    config.write(out)?;
    let base_ref = opts.base.display().to_string();
    let log = TrainLog::open(out, state.step)?;

    let started = Instant::now();
    let elapsed_before = state.elapsed_s;
    let stop_at = opts
        .max_steps
        .map_or(total_steps, |n| (state.step + n).min(total_steps));
    let mut grads = params.zeros_like();
    let save = |params: &LoraParams<f32>, adam: &AdamW, state: &SelectorTrainState| {
        save_checkpoint(out, |dir| {
            params.save_peft(dir, &base_ref)?;
            adam.save(&dir.join("optimizer.safetensors"))?;
            write_json(&dir.join("state.json"), state)
        })
    };
    while state.step < stop_at {
        let step_started = Instant::now();
        let epoch = (state.step / steps_per_epoch) as usize;
        let in_epoch = (state.step % steps_per_epoch) as usize;
        let order = epoch_order(opts.seed, epoch, docs.len());
        let batch =
            &order[in_epoch * opts.batch_size..((in_epoch + 1) * opts.batch_size).min(docs.len())];
        let mut seqs = Vec::with_capacity(batch.len());
        for &i in batch {
            let cands = candidate_order(opts, &docs[i], epoch, i);
            seqs.push(build_sequence(
                &trainer.selector.config,
                tok_of(&trainer),
                &docs[i],
                &cands,
                opts.max_tokens,
            )?);
        }
        let weights = label_weights(&seqs, opts.redundant_false_weight);
        grads.fill_zero();
        let mut loss = 0.0;
        let mut tokens = 0;
        for (seq, weights) in seqs.iter().zip(&weights) {
            loss += loss_backward(
                &trainer.base,
                &params,
                &seq.tokens,
                &seq.scored,
                weights,
                &mut grads,
            )? as f64;
            tokens += seq.tokens.len();
        }
        let grad_norm = clip_grad_norm(&mut grads, opts.max_grad_norm);
        let lr = scheduled_lr(opts.lr, state.step, opts.warmup_steps, total_steps);
        adam.update(&mut params, &grads, lr);
        state.step += 1;
        let secs = step_started.elapsed().as_secs_f64();
        state.elapsed_s = elapsed_before + started.elapsed().as_secs_f64();

        // On the schedule only, not where --max-steps stops a run: a resumed run must keep the
        // same best adapter as one that was never stopped.
        let validate_now = !valid.is_empty()
            && (state.step % opts.valid_every.max(1) == 0 || state.step == total_steps);
        let v = if validate_now {
            let v = trainer.validate(&params, &valid)?;
            if state.best_valid_loss.is_none_or(|b| v.loss < b) {
                state.best_valid_loss = Some(v.loss);
                state.best_step = Some(state.step);
                params.save_peft(out, &base_ref)?;
            }
            Some(v)
        } else {
            None
        };
        if valid.is_empty()
            && (state.step % opts.checkpoint_every.max(1) == 0 || state.step == stop_at)
        {
            params.save_peft(out, &base_ref)?;
        }
        if state.step % opts.checkpoint_every.max(1) == 0 || state.step == stop_at {
            save(&params, &adam, &state)?;
        }
        let report = Progress {
            step: state.step,
            total_steps,
            epoch,
            loss,
            grad_norm,
            lr,
            tokens_per_s: tokens as f64 / secs.max(1e-9),
            examples_per_s: seqs.len() as f64 / secs.max(1e-9),
            valid: v,
        };
        log.row(&report, state.elapsed_s)?;
        progress(&report);
    }
    let summary = Summary {
        steps: state.step,
        total_steps,
        finished: state.step >= total_steps,
        train_records: docs.len(),
        skipped_records: skipped,
        best_valid: state.best_valid_loss,
        best_step: state.best_step,
        elapsed_s: state.elapsed_s,
    };
    write_json(
        &out.join("train.json"),
        &json!({"options": opts, "lora": {"rank": opts.lora.rank, "alpha": opts.lora.alpha,
                "rslora": opts.lora.rslora, "targets": opts.lora.targets.iter()
                .map(|&p| crate::model::lora::PROJECTIONS[p]).collect::<Vec<_>>()},
                "summary": &summary}),
    )?;
    Ok(summary)
}

fn tok_of<'a>(t: &'a Trainer<'_>) -> &'a crate::tokenizer::Tokenizer {
    t.selector
        .model
        .tokenizer
        .as_ref()
        .expect("a selector has one")
}

/// `train_log.csv`: one row per step, with the validation when there was one. A resumed run
/// drops the rows after its checkpoint, which the resumed steps write again. Each row opens the
/// file anew, so that a log replaced during a run (a checkout, an editor) gets the later rows.
struct TrainLog {
    path: PathBuf,
}

const LOG_HEADER: &str =
    "step,epoch,lr,loss,grad_norm,tokens_per_s,valid_loss,valid_balanced_accuracy,elapsed_s";

impl TrainLog {
    fn open(out: &Path, step: u64) -> Result<Self> {
        let path = out.join("train_log.csv");
        let kept: Vec<String> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .filter(|l| {
                l.split(',')
                    .next()
                    .and_then(|s| s.parse::<u64>().ok())
                    .is_some_and(|s| s <= step)
            })
            .map(str::to_string)
            .collect();
        let mut text = format!("{LOG_HEADER}\n");
        for l in kept {
            text.push_str(&l);
            text.push('\n');
        }
        write_atomic(&path, text.as_bytes())?;
        Ok(TrainLog { path })
    }

    fn row(&self, p: &Progress, elapsed_s: f64) -> Result<()> {
        use std::io::Write;
        let (vl, va) = p.valid.map_or((String::new(), String::new()), |v| {
            (
                format!("{:.6}", v.loss),
                format!("{:.4}", v.balanced_accuracy),
            )
        });
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| KpgError::io(&self.path, e))?;
        writeln!(
            file,
            "{},{},{:.3e},{:.6},{:.4},{:.1},{vl},{va},{:.1}",
            p.step, p.epoch, p.lr, p.loss, p.grad_norm, p.tokens_per_s, elapsed_s
        )
        .map_err(|e| KpgError::io(&self.path, e))
    }
}
