//! kpg: keyphrase generation in the generate-then-select style of "One2Set + Large Language Model:
//! Best Partners for Keyphrase Generation" (EMNLP 2024). A One2Set generator proposes candidates;
//! a LLaMA-architecture selector keeps the right ones.
//!
//! This crate is the engine: model loading (Hugging Face layout, memory-mapped safetensors), a CPU
//! reference backend, the paged KV cache, the models, and the `kpg` command line.

pub mod assign;
pub mod autodiff;
pub mod backend;
pub mod checkpoint;
pub mod cli;
pub mod error;
pub mod eval;
pub mod gguf;
pub mod kv_cache;
pub mod memory;
pub mod model;
pub mod one2set;
pub mod pipeline;
pub mod preprocess;
pub mod rank;
pub mod records;
pub mod select;
pub mod selftest;
pub mod synth;
pub mod tokenizer;
pub mod train_generator;

pub use error::{KpgError, Result};
pub use pipeline::{Document, Pipeline, PipelineOptions, RecordId, Tagged, TaggedCandidate};
