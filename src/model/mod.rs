//! Model files and the models built from them.

pub mod config;
pub mod llama;
pub mod weights;
