//! `--device cpu|cuda`, present in every build so that asking a CPU-only binary for CUDA is a
//! clear error rather than an unknown flag.

use crate::error::{KpgError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DeviceKind {
    /// The CPU reference backend (f32 compute).
    #[default]
    Cpu,
    /// The CUDA backend (bf16 storage, f32 accumulation); needs a build with `--features cuda`.
    Cuda,
}

impl DeviceKind {
    /// Fails with a message that says how to get CUDA when this binary was built without it.
    pub fn require_built(self) -> Result<Self> {
        if self == DeviceKind::Cuda && !cfg!(feature = "cuda") {
            return Err(KpgError::CudaUnavailable(
                "this kpg was built without the `cuda` feature; rebuild with \
                 `cargo build --release --features cuda` (tools/install-nvcc.sh installs nvcc)"
                    .into(),
            ));
        }
        Ok(self)
    }
}
