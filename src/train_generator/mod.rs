//! Training the One2Set generator (../shared/DESIGN.md, "Training the generator"): examples from
//! the shared data format, target assignment by optimal transport or Hungarian matching, and the
//! training loop behind `kpg train generator`, with checkpoints that make it resumable. The model's
//! forward and backward passes it steps are [`crate::autodiff`].

pub mod checkpoint;
pub mod data;
pub mod options;
pub mod run;
pub mod step;
pub mod targets;
