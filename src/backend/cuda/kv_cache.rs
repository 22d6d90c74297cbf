//! The paged KV cache's storage in GPU memory: per layer, one bf16 buffer for keys and one for
//! values, `[num_blocks, block_size, num_kv_heads, head_dim]` as on the CPU. The block bookkeeping
//! (free list, block tables, copy-on-write) is `kv_cache::PagedKvCache`'s, shared with the CPU.

use std::sync::Arc;

use cudarc::driver::CudaSlice;
use half::bf16;

use crate::backend::cuda::device::{CudaDevice, CudaResultExt};
use crate::backend::paged::CacheShape;
use crate::error::Result;

pub struct DeviceKv {
    dev: Arc<CudaDevice>,
    pub k: Vec<CudaSlice<bf16>>, // [layers][num_blocks * block_size, num_kv_heads * head_dim]
    pub v: Vec<CudaSlice<bf16>>, // [layers][num_blocks * block_size, num_kv_heads * head_dim]
}

impl DeviceKv {
    pub fn new(
        dev: &Arc<CudaDevice>,
        shape: CacheShape,
        num_blocks: usize,
        block_size: usize,
    ) -> Result<Self> {
        let per_layer = num_blocks * block_size * shape.num_kv_heads * shape.head_dim;
        let mut k = Vec::with_capacity(shape.num_layers);
        let mut v = Vec::with_capacity(shape.num_layers);
        for l in 0..shape.num_layers {
            k.push(dev.alloc::<bf16>(per_layer, &format!("the KV cache's keys of layer {l}"))?);
            v.push(dev.alloc::<bf16>(per_layer, &format!("the KV cache's values of layer {l}"))?);
        }
        Ok(DeviceKv {
            dev: dev.clone(),
            k,
            v,
        })
    }

    /// Copies elements `from..from + n` to `to..to + n` in every layer (copy-on-write of a block).
    pub fn copy_range(&mut self, from: usize, to: usize, n: usize) -> Result<()> {
        let during = || "copying a shared KV-cache block before writing to it".to_string();
        let stream = self.dev.stream().clone();
        for buf in self.k.iter_mut().chain(self.v.iter_mut()) {
            if from < to {
                let (a, mut b) = buf.split_at_mut(to);
                stream
                    .memcpy_dtod(&a.slice(from..from + n), &mut b.slice_mut(..n))
                    .during(during)?;
            } else {
                let (mut a, b) = buf.split_at_mut(from);
                stream
                    .memcpy_dtod(&b.slice(..n), &mut a.slice_mut(to..to + n))
                    .during(during)?;
            }
        }
        Ok(())
    }
}
