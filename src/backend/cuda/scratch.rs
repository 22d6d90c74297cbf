//! Device scratch buffers that grow on demand and are then reused, the GPU counterpart of the CPU
//! workspaces: after the first batch of the largest shape, the steady state makes no cudaMalloc.

use cudarc::driver::{CudaSlice, CudaView, DeviceRepr, ValidAsZeroBits};

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

    /// The buffer as last sized by `get`; calling it before `get` is a bug in the caller.
    pub fn current_mut(&mut self) -> &mut CudaSlice<T> {
        self.buf
            .as_mut()
            .unwrap_or_else(|| panic!("{} used before it was sized", self.what))
    }

    /// The first `n` elements of the buffer as last sized by `get`.
    pub fn view(&self, n: usize) -> CudaView<'_, T> {
        self.buf
            .as_ref()
            .unwrap_or_else(|| panic!("{} used before it was sized", self.what))
            .slice(..n)
    }

    pub fn capacity(&self) -> usize {
        self.buf.as_ref().map_or(0, |b| b.len())
    }
}
