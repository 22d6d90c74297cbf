//! Model files and the models built from them.
//!
//! Where device code lives: a model's GPU forward is a `cuda` module inside the folder of the CPU
//! code it mirrors and is held to (`llama/cuda.rs` beside `llama/mod.rs`; the generator's
//! `one2set/cuda/` beside `one2set/decode.rs`). Every command that can use a GPU takes the same
//! `--device cpu|cuda` and `--gpu N`, passed down as a [`crate::backend::DeviceKind`] and an ordinal.

pub mod config;
pub mod llama;
pub mod lora;
pub mod mapped;
pub mod one2set;
pub mod one2set_config;
pub mod weights;
