//! Device scratch buffers that grow on demand and are then reused, the GPU counterpart of the CPU
//! workspaces: after the first batch of the largest shape, the steady state makes no cudaMalloc.

use cudarc::driver::{CudaSlice, DeviceRepr, ValidAsZeroBits};

use crate::backend::cuda::device::CudaDevice;
use crate::error::Result;

pub struct Scratch<T> {
    what: &'static str,
    buf: Option<CudaSlice<T>>,
}

impl<T: DeviceRepr + ValidAsZeroBits> Scratch<T> {
    pub const fn new(what: &'static str) -> Self {
        Scratch { what, buf: None }
    }

    /// A buffer of at least `n` elements; reallocated (by half again, so a slowly growing batch
    /// does not reallocate every step) only when too small.
    pub fn get(&mut self, dev: &CudaDevice, n: usize) -> Result<&mut CudaSlice<T>> {
        if self.buf.as_ref().is_none_or(|b| b.len() < n) {
            let grown = n + n / 2;
            self.buf = None;
            self.buf = Some(dev.alloc::<T>(grown, self.what)?);
        }
        Ok(self.buf.as_mut().expect("allocated above"))
    }

    /// The buffer as last sized (empty before the first `get`).
    pub fn current(&self) -> Option<&CudaSlice<T>> {
        self.buf.as_ref()
    }

    pub fn capacity(&self) -> usize {
        self.buf.as_ref().map_or(0, |b| b.len())
    }
}
