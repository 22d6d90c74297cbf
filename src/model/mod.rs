//! Model files and the models built from them.

pub mod config;
pub mod llama;
#[cfg(feature = "cuda")]
pub mod llama_cuda;
pub mod lora;
pub mod mapped;
pub mod one2set;
pub mod one2set_config;
pub mod weights;
