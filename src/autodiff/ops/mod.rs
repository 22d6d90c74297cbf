//! The layers of the training model, each as a `<layer>_forward` / `<layer>_backward` pair over
//! row-major buffers. Backward functions accumulate (`+=`) into parameter gradients, so that
//! gradients of sub-batches add up; what they do with input gradients is said on each.

pub mod attention;
pub mod copy;
pub mod dropout;
pub mod embedding;
pub mod ffn;
pub mod layernorm;
pub mod linear;
pub mod matmul;
pub mod positions;
