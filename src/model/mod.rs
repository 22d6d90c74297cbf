//! Model files and the models built from them.

pub mod config;
pub mod llama;
pub mod one2set;
pub mod one2set_config;
pub mod weights;
