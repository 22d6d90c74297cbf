//! The CPU backend: the specification of every operation the models need, in f32, using both
//! cores through rayon. Weights are read in their stored dtype (f32, f16, bf16) straight from the
//! memory map and widened to f32 just before use.

pub mod activation;
pub mod attention;
pub mod attention_flash;
pub mod bias;
pub mod convert;
pub mod dense;
pub mod embedding;
pub mod gemm;
pub mod layernorm;
pub mod linear;
pub mod norm;
pub mod quant;
pub mod rope;
pub mod segment_attention;
pub mod simd;
pub mod sinusoid;
pub mod softmax_stats;
