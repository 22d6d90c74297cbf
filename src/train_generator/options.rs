//! What a training run is asked to do: sizes, data, assignment, optimiser and schedule.

use std::path::PathBuf;

use super::targets::AssignMethod;
use crate::model::one2set_config::One2SetConfig;

/// The options of `kpg train generator`, validated.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub train: Vec<PathBuf>,
    /// Training records left out by id (e.g. one that duplicates a test document).
    pub exclude_ids: Vec<String>,
    pub valid: PathBuf,
    pub out: PathBuf,
    /// The model's sizes; `vocab_size` is an upper bound when the vocabulary is built here.
    pub config: One2SetConfig,
    /// A `tokenizer.json` to use instead of building the vocabulary from the training data.
    pub vocab: Option<PathBuf>,
    /// A generator directory whose weights a new run starts from (its optimiser starts afresh).
    pub init_from: Option<PathBuf>,
    pub assign: AssignMethod,
    pub epochs: usize,
    /// Documents per optimiser step (One2Set: 12).
    pub batch_size: usize,
    /// Adam's learning rate at the start (One2Set: 1e-4).
    pub lr: f64,
    /// Multiplies the learning rate when a validation does not improve (One2Set: 0.5).
    pub lr_decay: f64,
    /// Stop after this many validations in a row without improvement (0: never).
    pub patience: usize,
    pub dropout: f64,
    pub max_grad_norm: f64,
    pub seed: u64,
    /// Validate, keep the best model and checkpoint every this many steps (and at every epoch's end).
    pub valid_every: usize,
    /// Validation documents used (the first ones of the file).
    pub valid_docs: usize,
    /// Stop after this many optimiser steps in all, whatever the epochs say.
    pub max_steps: Option<usize>,
    /// Report the training loss every this many steps (a CSV row).
    pub log_every: usize,
}

impl TrainOptions {
    /// The options that decide the trained weights: a resume must repeat them.
    pub fn fingerprint(&self) -> serde_json::Value {
        serde_json::json!({
            "config": self.config.to_json(),
            "train": self.train.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "valid": self.valid.display().to_string(),
            "exclude_ids": self.exclude_ids,
            "vocab": self.vocab.as_ref().map(|p| p.display().to_string()),
            "init_from": self.init_from.as_ref().map(|p| p.display().to_string()),
            "assign": format!("{:?}", self.assign).to_lowercase(),
            "batch_size": self.batch_size,
            "dropout": self.dropout,
            "max_grad_norm": self.max_grad_norm,
            "seed": self.seed,
            "valid_every": self.valid_every,
            "valid_docs": self.valid_docs,
            "lr": self.lr,
            "lr_decay": self.lr_decay,
        })
    }
}
