//! The CUDA backend (feature `cuda`): the device layer on cudarc, cuBLAS matrix products, and
//! launchers for the hand-written kernels in `kernels/`. Storage is bf16 with f32 accumulation;
//! every kernel has a CPU twin in `backend::cpu` (or `assign`, `one2set`) that `kpg selftest`
//! holds it to.

pub mod attention;
pub mod check;
pub mod convert;
pub mod device;
pub mod gemm;
pub mod kv_cache;
pub mod llama_ops;
pub mod one2set_attention;
pub mod one2set_finish;
pub mod one2set_layers;
pub mod scratch;
pub mod sinkhorn;

pub use device::{CudaDevice, CudaResultExt};
pub use scratch::Scratch;
