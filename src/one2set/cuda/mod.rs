//! The generator on the GPU: the same decoding as [`super::decode`] (its specification), over the
//! One2Set model held in bf16 on the device. Built with the `cuda` feature only; the device is the
//! one `--device cuda --gpu N` names, as for every model.
//!
//! - [`weights`]: the model's tensors uploaded once;
//! - [`model`]: the encoder and one decoder step, on kernels/ and cuBLAS;
//! - [`decode`]: parallel control-code decoding over them.

pub mod decode;
pub mod model;
pub mod weights;
