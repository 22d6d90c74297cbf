//! The training loop of `kpg train generator`: epochs of shuffled batches; per step the target
//! assignment, the loss and its gradient, clipping and Adam; periodic validation that keeps the
//! best model and decays the learning rate when it stops improving (One2Set's `train_ml.py`); a
//! checkpoint with every validation, from which the same command resumes.
//!
//! Deterministic for a seed on the CPU: the epoch's order and every step's dropout mask are pure
//! functions of (seed, epoch) and (seed, step), so a resumed run takes the same steps as one that
//! was never interrupted.

use std::path::Path;
use std::time::Instant;

use super::checkpoint::{read_state, write_state, TrainLog, TrainState};
use super::data::{build_vocab, read_records, to_example, ExampleLimits, ReadStats, TrainExample};
use super::options::TrainOptions;
use super::step::{batch_loss, prepare_batch};
use super::targets::AssignMethod;
use crate::autodiff::{clip_grad_norm, loss_backward, Adam, Dropout, Params, TrainWorkspace};
use crate::checkpoint::{find_checkpoint, fingerprint_difference, save_checkpoint, write_atomic};
use crate::error::{KpgError, Result};
use crate::model::one2set_config::One2SetConfig;
use crate::one2set::vocab::{tokenizer_path, Vocab};
use crate::synth::splitmix64;

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub steps: usize,
    pub train_examples: usize,
    pub valid_examples: usize,
    pub best_valid_loss: Option<f64>,
    pub best_step: Option<usize>,
    pub resumed_from: Option<usize>,
    pub elapsed_s: f64,
}

/// A progress report, every step.
pub struct Progress<'a> {
    pub state: &'a TrainState,
    pub total_steps: usize,
    pub loss: f64,
    pub examples_per_s: f64,
    pub valid_loss: Option<f64>,
}

/// `kpg train generator`.
pub fn train(opts: &TrainOptions, mut report: impl FnMut(&Progress)) -> Result<TrainSummary> {
    let out = &opts.out;
    std::fs::create_dir_all(out).map_err(|e| KpgError::io(out, e))?;
    let resume = find_checkpoint(out);
    let saved = resume.as_deref().map(read_state).transpose()?;
    let fingerprint = opts.fingerprint();
    if let Some(s) = &saved {
        if let Some(field) = fingerprint_difference(&s.fingerprint, &fingerprint) {
            return Err(KpgError::InvalidArgument(format!(
                "{} holds a run with another `{field}`; resume it with the same options or \
                 train into a new --out",
                out.display()
            )));
        }
    }

    // Data and vocabulary.
    let mut stats = ReadStats::default();
    let mut records = read_records(&opts.train, &mut stats)?;
    let before = records.len();
    records.retain(|r| !opts.exclude_ids.contains(&r.id));
    if records.len() + opts.exclude_ids.len() != before {
        return Err(KpgError::InvalidArgument(format!(
            "--exclude-id: {} of the {} ids are not training records",
            opts.exclude_ids.len() - (before - records.len()),
            opts.exclude_ids.len()
        )));
    }
    stats.records -= before - records.len();
    let vocab = vocabulary(opts, out, saved.is_some(), &records)?;
    let mut config = opts.config.clone();
    config.vocab_size = config.vocab_size.min(vocab.len());
    config.dtype = Some("float32".into());
    let limits = ExampleLimits {
        vocab_size: config.vocab_size,
        max_keyphrase_len: config.max_keyphrase_len,
        max_source_tokens: super::data::MAX_TRAIN_SOURCE_TOKENS.min(config.max_source_len),
    };
    let train: Vec<TrainExample> = records
        .iter()
        .filter_map(|r| to_example(r, &vocab, limits, &mut stats))
        .collect();
    drop(records);
    for w in &stats.warnings {
        eprintln!("kpg train: skipped {w}");
    }
    let mut valid_stats = ReadStats::default();
    let valid_records = read_records(std::slice::from_ref(&opts.valid), &mut valid_stats)?;
    let valid: Vec<TrainExample> = valid_records
        .iter()
        .filter_map(|r| to_example(r, &vocab, limits, &mut valid_stats))
        .take(opts.valid_docs)
        .collect();
    for w in &valid_stats.warnings {
        eprintln!("kpg train: skipped {w}");
    }
    if valid.is_empty() {
        return Err(KpgError::InvalidArgument(format!(
            "{} has no usable validation document (records with a title or abstract and a \
             keyphrase, sources of at most 400 tokens)",
            opts.valid.display()
        )));
    }
    if train.is_empty() {
        return Err(KpgError::InvalidArgument(
            "no training example is left after the filters (sources of at most 400 tokens, \
             keyphrases of at most max_keyphrase_len - 1 words)"
                .into(),
        ));
    }
    eprintln!(
        "kpg train: {} training documents ({} read, {} malformed, {} too long, {} without a \
         usable keyphrase), {} validation documents, vocabulary {}",
        train.len(),
        stats.records,
        stats.malformed,
        stats.too_long,
        stats.no_keyphrase,
        valid.len(),
        config.vocab_size
    );

    // Model, optimiser and position in the schedule.
    let (mut params, mut adam, mut state) = match &resume {
        Some(dir) => {
            let state = saved.clone().expect("read with the checkpoint");
            let params = Params::<f32>::load(dir)?;
            let adam = Adam::load(&dir.join("optimizer.safetensors"), &params)?;
            eprintln!(
                "kpg train: resuming from step {} (epoch {}, batch {})",
                state.step,
                state.epoch + 1,
                state.batch_in_epoch
            );
            (params, adam, state)
        }
        None => {
            let params = match &opts.init_from {
                Some(dir) => warm_start(dir, &config)?,
                None => Params::<f32>::init(&config, opts.seed),
            };
            let adam = Adam::new(&params);
            let state = TrainState {
                step: 0,
                epoch: 0,
                batch_in_epoch: 0,
                lr: opts.lr,
                best_valid_loss: None,
                best_step: None,
                bad_validations: 0,
                elapsed_s: 0.0,
                fingerprint: fingerprint.clone(),
            };
            (params, adam, state)
        }
    };
    let resumed_from = resume.as_ref().map(|_| state.step);
    let log = TrainLog::open(out, state.step)?;
    let mut grads = params.zeros_like();
    let mut ws = TrainWorkspace::new();

    let per_epoch = train.len().div_ceil(opts.batch_size);
    let total_steps = opts
        .max_steps
        .unwrap_or(usize::MAX)
        .min(per_epoch * opts.epochs);
    let session_start = Instant::now();
    let elapsed_before = state.elapsed_s;
    let mut window = (0.0f64, 0usize, Instant::now()); // (loss sum, steps, start)
    let mut stopped_early = false;

    'epochs: while state.epoch < opts.epochs && state.step < total_steps {
        let order = epoch_order(train.len(), opts.seed, state.epoch);
        let batches: Vec<&[usize]> = order.chunks(opts.batch_size).collect();
        while state.batch_in_epoch < batches.len() {
            if state.step >= total_steps {
                break 'epochs;
            }
            let step_start = Instant::now();
            let examples: Vec<&TrainExample> = batches[state.batch_in_epoch]
                .iter()
                .map(|&i| &train[i])
                .collect();
            let prepared = prepare_batch(&params, &examples, opts.assign, &mut ws)?;
            grads.fill_zero();
            let dropout = Dropout {
                p: opts.dropout,
                seed: splitmix64(opts.seed ^ splitmix64(state.step as u64 + 1)),
            };
            let t = &prepared.targets;
            let loss = loss_backward(
                &params,
                &prepared.batch,
                &t.targets,
                &t.weights,
                t.tokens.max(1) as f32,
                dropout,
                &mut grads,
                &mut ws,
            )?;
            if !loss.is_finite() {
                return Err(KpgError::InvalidArgument(format!(
                    "the training loss is {loss} at step {}; lower --lr",
                    state.step + 1
                )));
            }
            clip_grad_norm(&mut grads, opts.max_grad_norm);
            adam.lr = state.lr;
            adam.step(&mut params, &grads);
            state.step += 1;
            state.batch_in_epoch += 1;
            window.0 += loss as f64;
            window.1 += 1;
            let examples_per_s = examples.len() as f64 / step_start.elapsed().as_secs_f64();
            let elapsed = elapsed_before + session_start.elapsed().as_secs_f64();
            state.elapsed_s = elapsed;

            let epoch_end = state.batch_in_epoch == batches.len();
            let mut valid_loss = None;
            if state.step % opts.log_every == 0 || epoch_end {
                let secs = window.2.elapsed().as_secs_f64();
                let rate = (window.1 * opts.batch_size) as f64 / secs.max(1e-9);
                log.row(
                    state.step,
                    state.epoch,
                    "train",
                    window.0 / window.1 as f64,
                    state.lr,
                    rate,
                    elapsed,
                )?;
                window = (0.0, 0, Instant::now());
            }
            if state.step % opts.valid_every == 0 || epoch_end || state.step == total_steps {
                let v = validation_loss(&params, &valid, opts, &mut ws)?;
                valid_loss = Some(v);
                log.row(
                    state.step,
                    state.epoch,
                    "valid",
                    v,
                    state.lr,
                    examples_per_s,
                    elapsed,
                )?;
                if state.best_valid_loss.is_none_or(|b| v < b) {
                    state.best_valid_loss = Some(v);
                    state.best_step = Some(state.step);
                    state.bad_validations = 0;
                    save_best(&params, out)?;
                } else {
                    state.bad_validations += 1;
                    state.lr *= opts.lr_decay;
                }
                if epoch_end {
                    state.epoch += 1;
                    state.batch_in_epoch = 0;
                }
                save_checkpoint(out, |dir| {
                    params.save(dir)?;
                    adam.save(&dir.join("optimizer.safetensors"))?;
                    write_state(dir, &state)
                })?;
                if opts.patience > 0 && state.bad_validations >= opts.patience {
                    stopped_early = true;
                }
            } else if epoch_end {
                state.epoch += 1;
                state.batch_in_epoch = 0;
            }
            report(&Progress {
                state: &state,
                total_steps,
                loss: loss as f64,
                examples_per_s,
                valid_loss,
            });
            if stopped_early {
                eprintln!(
                    "kpg train: {} validations without improvement; stopping",
                    state.bad_validations
                );
                break 'epochs;
            }
            if epoch_end {
                continue 'epochs;
            }
        }
    }

    write_summary(opts, out, &state, &stats, train.len(), valid.len(), &config)?;
    Ok(TrainSummary {
        steps: state.step,
        train_examples: train.len(),
        valid_examples: valid.len(),
        best_valid_loss: state.best_valid_loss,
        best_step: state.best_step,
        resumed_from,
        elapsed_s: state.elapsed_s,
    })
}

/// The vocabulary of the run: the one it started with when resuming, else `--vocab`, else built
/// from the training records. Written to `out/tokenizer.json` either way.
fn vocabulary(
    opts: &TrainOptions,
    out: &Path,
    resuming: bool,
    records: &[super::data::TokenizedRecord],
) -> Result<Vocab> {
    let path = tokenizer_path(out);
    let vocab = if resuming && path.is_file() {
        return Vocab::load(&path);
    } else if let Some(given) = &opts.vocab {
        Vocab::load(given)?
    } else {
        build_vocab(records, opts.config.vocab_size)
    };
    write_atomic(
        &path,
        serde_json::to_string(&vocab.to_tokenizer_json())
            .expect("a vocabulary serialises")
            .as_bytes(),
    )?;
    Ok(vocab)
}

/// The documents of an epoch in a shuffled order that depends only on (seed, epoch).
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut key = splitmix64(seed ^ splitmix64(0x5eed_0000 + epoch as u64));
    for i in (1..n).rev() {
        key = splitmix64(key);
        order.swap(i, (key % (i as u64 + 1)) as usize);
    }
    order
}

/// The mean token loss over the validation documents, without dropout, with targets matched to
/// slots by Hungarian matching whatever the run trains with: OT's dynamic supply moves slots from
/// the cheap null target to keyphrases as the model improves, which raises its loss per token, so
/// OT-assigned losses do not compare from one validation to the next; a one-to-one matching keeps
/// the number of keyphrase slots fixed.
fn validation_loss(
    params: &Params<f32>,
    valid: &[TrainExample],
    opts: &TrainOptions,
    ws: &mut TrainWorkspace<f32>,
) -> Result<f64> {
    let (mut sum, mut tokens) = (0.0, 0usize);
    for chunk in valid.chunks(opts.batch_size.max(16)) {
        let examples: Vec<&TrainExample> = chunk.iter().collect();
        let prepared = prepare_batch(params, &examples, AssignMethod::Hungarian, ws)?;
        let (s, t) = batch_loss(params, &prepared, ws)?;
        sum += s;
        tokens += t;
    }
    Ok(if tokens == 0 {
        f64::NAN
    } else {
        sum / tokens as f64
    })
}

/// Writes the best model's weights and config beside the vocabulary: `out` is then a generator
/// directory for `kpg generate`.
fn save_best(params: &Params<f32>, out: &Path) -> Result<()> {
    let tmp = out.join("best.tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| KpgError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| KpgError::io(&tmp, e))?;
    params.save(&tmp)?;
    for name in ["model.safetensors", "config.json"] {
        std::fs::rename(tmp.join(name), out.join(name)).map_err(|e| KpgError::io(out, e))?;
    }
    std::fs::remove_dir_all(&tmp).map_err(|e| KpgError::io(&tmp, e))
}

fn write_summary(
    opts: &TrainOptions,
    out: &Path,
    state: &TrainState,
    stats: &ReadStats,
    train: usize,
    valid: usize,
    config: &One2SetConfig,
) -> Result<()> {
    let summary = serde_json::json!({
        "options": opts.fingerprint(),
        "config": config.to_json(),
        "epochs": opts.epochs,
        "max_steps": opts.max_steps,
        "lr": opts.lr,
        "steps": state.step,
        "best_step": state.best_step,
        "best_valid_loss": state.best_valid_loss,
        "train_seconds": state.elapsed_s,
        "data": {
            "train_documents": train,
            "valid_documents": valid,
            "records_read": stats.records,
            "malformed": stats.malformed,
            "too_long": stats.too_long,
            "without_keyphrase": stats.no_keyphrase,
        },
        "kpg_version": env!("CARGO_PKG_VERSION"),
    });
    write_atomic(
        &out.join("train.json"),
        serde_json::to_string_pretty(&summary)
            .expect("a summary serialises")
            .as_bytes(),
    )
}

/// The weights of the generator in `dir`, which must have the shapes of `config` (same sizes and
/// vocabulary size): a new run that continues an earlier model with a fresh optimiser.
fn warm_start(dir: &Path, config: &One2SetConfig) -> Result<Params<f32>> {
    let loaded = Params::<f32>::load(dir)?;
    let want = Params::<f32>::zeros(config);
    for (w, g) in want.tensors.iter().zip(&loaded.tensors) {
        if w.name != g.name || w.shape != g.shape {
            return Err(KpgError::InvalidArgument(format!(
                "--init-from {}: tensor `{}` has shape {:?}, but this run's sizes give {:?} \
                 (use the same --preset, sizes, vocabulary and --vocab-size as that model)",
                dir.display(),
                w.name,
                g.shape,
                w.shape
            )));
        }
    }
    if want.tensors.len() != loaded.tensors.len() {
        return Err(KpgError::InvalidArgument(format!(
            "--init-from {}: {} tensors, this run's sizes give {}",
            dir.display(),
            loaded.tensors.len(),
            want.tensors.len()
        )));
    }
    Ok(loaded)
}
