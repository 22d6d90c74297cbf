//! Compute backends. `cpu` is the reference: plain, readable f32 code that every fast path is
//! tested against. The CUDA backend (feature `cuda`) implements the same operations with kernels
//! from `kernels/`.

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
mod device_kind;
pub mod paged;

pub use device_kind::DeviceKind;
