//! Training a selector: LoRA on a frozen LLaMA base (a Hugging Face directory or a GGUF file), on
//! the CPU, with the loss on the label tokens of selection programs (`select::program`) only.
//!
//! - [`base`]: the frozen weights, widened to dense matrices;
//! - [`lora_params`]: what is trained, and peft's format for it;
//! - [`ops`] and [`model`]: the forward pass with its activations, and the backward pass;
//! - [`optim`]: AdamW, the schedule and clipping;
//! - [`examples`]: labelled candidates turned into teacher-forced sequences;
//! - [`run`]: the loop, its checkpoints and `--resume`.

pub mod base;
pub mod examples;
pub mod labels;
pub mod lora_params;
pub mod model;
pub mod ops;
pub mod optim;
pub mod run;
