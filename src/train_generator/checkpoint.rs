//! The files of a training run's output directory, written so that a run killed at any moment
//! (even `kill -9`) can be resumed by running the same command again:
//!
//! | path | what |
//! |---|---|
//! | `config.json`, `model.safetensors`, `tokenizer.json` | the best model so far: a generator directory |
//! | `checkpoint/{model,optimizer}.safetensors`, `checkpoint/state.json` | the last checkpoint |
//! | `train_log.csv` | losses, one row per report and per validation |
//! | `train.json` | how the model was trained: options, data, best validation |
//!
//! Every file is written beside its final name and renamed into place, and a checkpoint is a whole
//! directory renamed at once ([`crate::checkpoint`]), so a reader sees the old version or the new
//! one, never half of one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checkpoint::write_atomic;
use crate::error::{KpgError, Result};

/// Where the training loop is, and what must match for a resume.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    /// Optimiser steps taken.
    pub step: usize,
    /// The epoch in progress (from 0) and the batches of it already taken.
    pub epoch: usize,
    pub batch_in_epoch: usize,
    /// The learning rate now (it decays when validation stops improving).
    pub lr: f64,
    pub best_valid_loss: Option<f64>,
    pub best_step: Option<usize>,
    /// Validations in a row without improvement.
    pub bad_validations: usize,
    /// Seconds of training before this checkpoint, over all sessions.
    pub elapsed_s: f64,
    /// The options that decide the result; a resume with other ones is refused.
    pub fingerprint: serde_json::Value,
}

pub fn read_state(dir: &Path) -> Result<TrainState> {
    let path = dir.join("state.json");
    let text = fs::read_to_string(&path).map_err(|e| KpgError::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| KpgError::InputLine {
        path,
        line: 1,
        reason: format!("not a training state: {e}"),
    })
}

pub fn write_state(dir: &Path, state: &TrainState) -> Result<()> {
    let text = serde_json::to_string_pretty(state).expect("a state serialises");
    write_atomic(&dir.join("state.json"), text.as_bytes())
}

/// The CSV log of losses.
pub struct TrainLog {
    path: PathBuf,
}

pub const LOG_HEADER: &str = "step,epoch,split,loss,lr,examples_per_s,elapsed_s";

impl TrainLog {
    /// Opens the log of `out`, keeping only rows up to `step` (the ones a resumed run has
    /// not yet redone).
    pub fn open(out: &Path, step: usize) -> Result<Self> {
        let path = out.join("train_log.csv");
        let kept: Vec<String> = match fs::read_to_string(&path) {
            Ok(text) => text
                .lines()
                .skip(1)
                .filter(|l| {
                    l.split(',')
                        .next()
                        .and_then(|s| s.parse::<usize>().ok())
                        .is_some_and(|s| s <= step)
                })
                .map(str::to_string)
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut text = String::from(LOG_HEADER);
        text.push('\n');
        for l in kept {
            text.push_str(&l);
            text.push('\n');
        }
        write_atomic(&path, text.as_bytes())?;
        Ok(TrainLog { path })
    }

    #[allow(clippy::too_many_arguments)]
    pub fn row(
        &self,
        step: usize,
        epoch: usize,
        split: &str,
        loss: f64,
        lr: f64,
        examples_per_s: f64,
        elapsed_s: f64,
    ) -> Result<()> {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| KpgError::io(&self.path, e))?;
        writeln!(
            f,
            "{step},{epoch},{split},{loss:.6},{lr:e},{examples_per_s:.2},{elapsed_s:.1}"
        )
        .map_err(|e| KpgError::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{find_checkpoint, save_checkpoint};

    #[test]
    fn a_checkpoint_replaces_the_last_one_and_the_log_drops_rows_past_it() {
        let out = tempfile::tempdir().unwrap();
        for step in [1usize, 2] {
            save_checkpoint(out.path(), |d| {
                fs::write(d.join("state.json"), format!("{step}")).map_err(|e| KpgError::io(d, e))
            })
            .unwrap();
        }
        let dir = find_checkpoint(out.path()).unwrap();
        assert_eq!(fs::read_to_string(dir.join("state.json")).unwrap(), "2");
        assert!(!out.path().join("checkpoint.old").exists());

        let log = TrainLog::open(out.path(), 0).unwrap();
        for s in 1..=4 {
            log.row(s, 0, "train", 1.0, 1e-4, 10.0, 1.0).unwrap();
        }
        TrainLog::open(out.path(), 2).unwrap();
        let text = fs::read_to_string(out.path().join("train_log.csv")).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
    }
}
