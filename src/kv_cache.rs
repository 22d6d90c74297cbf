//! The paged KV cache, in vLLM's terms: the cache is a pool of fixed-size blocks of
//! `block_size` token slots; a sequence owns a `BlockTable` mapping its logical blocks to physical
//! ones; `slot = physical_block * block_size + pos % block_size` says where a token's keys and values
//! go (`slot_mapping`). Blocks are reference-counted so that sequences with a common prefix share
//! them; a shared block is copied before anyone writes into it (copy-on-write).

use crate::backend::paged::{CacheShape, PagedLayer};
use crate::error::{KpgError, Result};

pub const DEFAULT_BLOCK_SIZE: usize = 16;

/// How big the cache is, as users think of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CacheCapacity {
    Tokens(usize),
    Bytes(usize),
    /// This share (0..1] of the GPU memory free when the cache is made (CUDA only).
    FreeGpuShare(f64),
}

/// Free list and reference counts of the physical blocks.
#[derive(Debug, Clone)]
pub struct BlockAllocator {
    ref_counts: Vec<u32>, // [num_blocks]
    free: Vec<u32>,
}

impl BlockAllocator {
    pub fn new(num_blocks: usize) -> Self {
        BlockAllocator {
            ref_counts: vec![0; num_blocks],
            // Popped from the end, so blocks are handed out 0, 1, 2, ...
            free: (0..num_blocks as u32).rev().collect(),
        }
    }

    pub fn allocate(&mut self) -> Option<u32> {
        let block = self.free.pop()?;
        self.ref_counts[block as usize] = 1;
        Some(block)
    }

    pub fn retain(&mut self, block: u32) {
        debug_assert!(
            self.ref_counts[block as usize] > 0,
            "retain of a free block"
        );
        self.ref_counts[block as usize] += 1;
    }

    /// Drops one reference; the block returns to the free list with its last one.
    pub fn release(&mut self, block: u32) {
        let count = &mut self.ref_counts[block as usize];
        assert!(*count > 0, "release of free block {block}");
        *count -= 1;
        if *count == 0 {
            self.free.push(block);
        }
    }

    pub fn ref_count(&self, block: u32) -> u32 {
        self.ref_counts[block as usize]
    }

    pub fn num_free(&self) -> usize {
        self.free.len()
    }

    pub fn num_blocks(&self) -> usize {
        self.ref_counts.len()
    }
}

/// One sequence's logical-to-physical block map and how many tokens it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockTable {
    blocks: Vec<u32>,
    num_tokens: usize,
}

impl BlockTable {
    pub fn blocks(&self) -> &[u32] {
        &self.blocks
    }

    pub fn num_tokens(&self) -> usize {
        self.num_tokens
    }
}

pub struct PagedKvCache {
    shape: CacheShape,
    block_size: usize,
    storage: KvStorage,
    allocator: BlockAllocator,
}

/// Where the keys and values live; the block bookkeeping above is the same for both.
enum KvStorage {
    Host {
        k: Vec<Vec<f32>>, // [layers][num_blocks, block_size, num_kv_heads, head_dim]
        v: Vec<Vec<f32>>, // [layers][num_blocks, block_size, num_kv_heads, head_dim]
    },
    #[cfg(feature = "cuda")]
    Device(crate::backend::cuda::kv_cache::DeviceKv),
}

/// Blocks of `block_size` tokens that `capacity` holds, at `bytes_per_token`.
fn num_blocks_for(
    capacity: CacheCapacity,
    bytes_per_token: usize,
    block_size: usize,
    free_gpu_bytes: Option<usize>,
) -> Result<usize> {
    if block_size == 0 {
        return Err(KpgError::InvalidArgument(
            "block size must be at least 1".into(),
        ));
    }
    let tokens = match capacity {
        CacheCapacity::Tokens(n) => n,
        CacheCapacity::Bytes(b) => b / bytes_per_token,
        CacheCapacity::FreeGpuShare(share) => {
            let free = free_gpu_bytes.ok_or_else(|| {
                KpgError::InvalidArgument(
                    "a KV cache sized as a share of free GPU memory needs --device cuda".into(),
                )
            })?;
            if !(share > 0.0 && share <= 1.0) {
                return Err(KpgError::InvalidArgument(format!(
                    "the KV cache's share of free GPU memory must be in (0, 1], got {share}"
                )));
            }
            (free as f64 * share) as usize / bytes_per_token
        }
    };
    let num_blocks = tokens.div_ceil(block_size);
    if num_blocks == 0 {
        return Err(KpgError::InvalidArgument(format!(
            "KV cache capacity {capacity:?} holds no block of {block_size} tokens"
        )));
    }
    Ok(num_blocks)
}

impl PagedKvCache {
    /// A cache in host memory (f32), for the CPU backend.
    pub fn new(shape: CacheShape, capacity: CacheCapacity, block_size: usize) -> Result<Self> {
        let num_blocks = num_blocks_for(capacity, shape.bytes_per_token(), block_size, None)?;
        crate::memory::check_fits(
            crate::memory::product(&[num_blocks, block_size, shape.bytes_per_token()]),
            || {
                format!(
                    "the KV cache ({num_blocks} blocks of {block_size} tokens; set by \
                     --cache-tokens or --cache-mb, and --block-size)"
                )
            },
        )?;
        let per_layer = num_blocks * block_size * shape.num_kv_heads * shape.head_dim;
        Ok(PagedKvCache {
            shape,
            block_size,
            // Zeroed allocations come from calloc: pages are only touched when written.
            storage: KvStorage::Host {
                k: (0..shape.num_layers)
                    .map(|_| vec![0f32; per_layer])
                    .collect(),
                v: (0..shape.num_layers)
                    .map(|_| vec![0f32; per_layer])
                    .collect(),
            },
            allocator: BlockAllocator::new(num_blocks),
        })
    }

    /// A cache in GPU memory (bf16), for the CUDA backend.
    #[cfg(feature = "cuda")]
    pub fn new_on_device(
        dev: &std::sync::Arc<crate::backend::cuda::CudaDevice>,
        shape: CacheShape,
        capacity: CacheCapacity,
        block_size: usize,
    ) -> Result<Self> {
        let bytes_per_token = shape.bytes_per_token() / 2; // bf16
        let (free, _) = dev.memory()?;
        let num_blocks = num_blocks_for(capacity, bytes_per_token, block_size, Some(free))?;
        let storage =
            crate::backend::cuda::kv_cache::DeviceKv::new(dev, shape, num_blocks, block_size)?;
        Ok(PagedKvCache {
            shape,
            block_size,
            storage: KvStorage::Device(storage),
            allocator: BlockAllocator::new(num_blocks),
        })
    }

    /// The GPU storage of a cache made by `new_on_device`.
    #[cfg(feature = "cuda")]
    pub fn device_storage(&mut self) -> Option<&mut crate::backend::cuda::kv_cache::DeviceKv> {
        match &mut self.storage {
            KvStorage::Device(d) => Some(d),
            KvStorage::Host { .. } => None,
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn shape(&self) -> CacheShape {
        self.shape
    }

    pub fn allocator(&self) -> &BlockAllocator {
        &self.allocator
    }

    /// Token capacity of the whole pool.
    pub fn capacity_tokens(&self) -> usize {
        self.allocator.num_blocks() * self.block_size
    }

    /// Physical blocks that `reserve(table, extra)` would take from the free list.
    pub fn blocks_needed(&self, table: &BlockTable, extra: usize) -> usize {
        let end = table.num_tokens + extra;
        let grow = end
            .div_ceil(self.block_size)
            .saturating_sub(table.blocks.len());
        grow + self.shared_blocks_in(table, table.num_tokens, end).count()
    }

    /// Logical indices of the shared blocks that positions first..end would write into.
    fn shared_blocks_in<'a>(
        &'a self,
        table: &'a BlockTable,
        first: usize,
        end: usize,
    ) -> impl Iterator<Item = usize> + 'a {
        let last = end.div_ceil(self.block_size).min(table.blocks.len());
        (first / self.block_size..last)
            .filter(move |&b| first < end && self.allocator.ref_count(table.blocks[b]) > 1)
    }

    /// Makes room for `extra` more tokens: allocates blocks and un-shares the blocks about to be
    /// written. All or nothing: when the pool is short, nothing changes and `CacheFull` says how
    /// short.
    pub fn reserve(&mut self, table: &mut BlockTable, extra: usize) -> Result<()> {
        let needed = self.blocks_needed(table, extra);
        if needed > self.allocator.num_free() {
            return Err(KpgError::CacheFull {
                needed,
                free: self.allocator.num_free(),
                total: self.allocator.num_blocks(),
            });
        }
        let end = table.num_tokens + extra;
        let shared: Vec<usize> = self
            .shared_blocks_in(table, table.num_tokens, end)
            .collect();
        for logical in shared {
            let old = table.blocks[logical];
            let new = self.allocator.allocate().expect("counted above");
            if let Err(e) = self.copy_block(old, new) {
                self.allocator.release(new);
                return Err(e);
            }
            self.allocator.release(old);
            table.blocks[logical] = new;
        }
        while table.blocks.len() * self.block_size < end {
            let block = self.allocator.allocate().expect("counted above");
            table.blocks.push(block);
        }
        Ok(())
    }

    fn copy_block(&mut self, from: u32, to: u32) -> Result<()> {
        let n = self.block_size * self.shape.num_kv_heads * self.shape.head_dim;
        let (from, to) = (from as usize * n, to as usize * n);
        match &mut self.storage {
            KvStorage::Host { k, v } => {
                for layer in k.iter_mut().chain(v.iter_mut()) {
                    layer.copy_within(from..from + n, to);
                }
                Ok(())
            }
            #[cfg(feature = "cuda")]
            KvStorage::Device(d) => d.copy_range(from, to, n),
        }
    }

    fn host(&self) -> (&[Vec<f32>], &[Vec<f32>]) {
        match &self.storage {
            KvStorage::Host { k, v } => (k, v),
            #[cfg(feature = "cuda")]
            KvStorage::Device(_) => unreachable!(
                "CPU attention over a GPU cache: a model and a cache of different devices"
            ),
        }
    }

    /// Marks `n` reserved positions as written (after the forward pass that wrote them).
    pub fn advance(&self, table: &mut BlockTable, n: usize) {
        assert!(
            (table.num_tokens + n) <= table.blocks.len() * self.block_size,
            "advance past reserved blocks"
        );
        table.num_tokens += n;
    }

    /// A new sequence that shares every block of `table` (its whole prefix) by reference.
    pub fn fork(&mut self, table: &BlockTable) -> BlockTable {
        for &b in &table.blocks {
            self.allocator.retain(b);
        }
        table.clone()
    }

    /// Returns the sequence's blocks to the pool (those no other sequence still shares).
    pub fn release(&mut self, table: &mut BlockTable) {
        for b in table.blocks.drain(..) {
            self.allocator.release(b);
        }
        table.num_tokens = 0;
    }

    /// Cache slot of the token at `pos` of the sequence.
    pub fn slot(&self, table: &BlockTable, pos: usize) -> usize {
        table.blocks[pos / self.block_size] as usize * self.block_size + pos % self.block_size
    }

    /// Writes keys and values of a batch of tokens into their slots of one layer.
    pub fn write_kv(
        &mut self,
        layer: usize,
        slot_mapping: &[usize], // [tokens]
        k: &[f32],              // [tokens, num_kv_heads, head_dim]
        v: &[f32],              // [tokens, num_kv_heads, head_dim]
    ) {
        let row = self.shape.num_kv_heads * self.shape.head_dim;
        let (kc, vc) = match &mut self.storage {
            KvStorage::Host { k, v } => (&mut k[layer], &mut v[layer]),
            #[cfg(feature = "cuda")]
            KvStorage::Device(_) => unreachable!(
                "CPU KV write into a GPU cache: a model and a cache of different devices"
            ),
        };
        for (t, &slot) in slot_mapping.iter().enumerate() {
            kc[slot * row..(slot + 1) * row].copy_from_slice(&k[t * row..(t + 1) * row]);
            vc[slot * row..(slot + 1) * row].copy_from_slice(&v[t * row..(t + 1) * row]);
        }
    }

    pub fn layer(&self, layer: usize) -> PagedLayer<'_> {
        let (k, v) = self.host();
        PagedLayer {
            k: &k[layer],
            v: &v[layer],
            block_size: self.block_size,
            num_kv_heads: self.shape.num_kv_heads,
            head_dim: self.shape.head_dim,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(blocks: usize, bs: usize) -> PagedKvCache {
        let shape = CacheShape {
            num_layers: 2,
            num_kv_heads: 1,
            head_dim: 2,
        };
        PagedKvCache::new(shape, CacheCapacity::Tokens(blocks * bs), bs).unwrap()
    }

    #[test]
    fn capacity_in_bytes_rounds_to_blocks() {
        let shape = CacheShape {
            num_layers: 2,
            num_kv_heads: 2,
            head_dim: 4,
        };
        // 128 bytes per token (K and V, 2 layers, 2 heads of 4 f32); 40 tokens round up to 3 blocks.
        let c = PagedKvCache::new(shape, CacheCapacity::Bytes(128 * 40), 16).unwrap();
        assert_eq!(c.allocator().num_blocks(), 3);
        assert!(PagedKvCache::new(shape, CacheCapacity::Bytes(10), 16).is_err());
        // A share of free GPU memory means nothing for a host cache.
        let err = PagedKvCache::new(shape, CacheCapacity::FreeGpuShare(0.5), 16)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("--device cuda"), "{err}");
    }

    #[test]
    fn gpu_share_sizes_by_free_memory_and_rejects_bad_shares() {
        // 1000 bytes free, half of it at 10 bytes a token: 50 tokens, 4 blocks of 16.
        let n = num_blocks_for(CacheCapacity::FreeGpuShare(0.5), 10, 16, Some(1000)).unwrap();
        assert_eq!(n, 4);
        for bad in [0.0, -0.1, 1.5, f64::NAN] {
            assert!(num_blocks_for(CacheCapacity::FreeGpuShare(bad), 10, 16, Some(1000)).is_err());
        }
    }

    #[test]
    fn reserve_is_all_or_nothing_and_release_frees() {
        let mut c = cache(3, 4);
        let mut a = BlockTable::default();
        c.reserve(&mut a, 9).unwrap();
        assert_eq!(a.blocks().len(), 3);
        c.advance(&mut a, 9);
        let mut b = BlockTable::default();
        let err = c.reserve(&mut b, 1).unwrap_err();
        assert!(matches!(
            err,
            KpgError::CacheFull {
                needed: 1,
                free: 0,
                ..
            }
        ));
        assert_eq!(b, BlockTable::default());
        c.release(&mut a);
        assert_eq!(c.allocator().num_free(), 3);
        c.reserve(&mut b, 12).unwrap();
    }

    #[test]
    fn fork_shares_blocks_and_copies_on_write() {
        let mut c = cache(8, 4);
        let mut parent = BlockTable::default();
        c.reserve(&mut parent, 6).unwrap();
        let slots: Vec<usize> = (0..6).map(|p| c.slot(&parent, p)).collect();
        let k: Vec<f32> = (0..12).map(|i| i as f32).collect();
        c.write_kv(0, &slots, &k, &k);
        c.write_kv(1, &slots, &k, &k);
        c.advance(&mut parent, 6);

        let mut child = c.fork(&parent);
        assert_eq!(child.blocks(), parent.blocks());
        assert_eq!(c.allocator().ref_count(parent.blocks()[0]), 2);
        // Appending to the child writes into the shared, half-full second block: it is copied;
        // the full first block stays shared.
        assert_eq!(c.blocks_needed(&child, 1), 1);
        c.reserve(&mut child, 1).unwrap();
        assert_eq!(child.blocks()[0], parent.blocks()[0]);
        assert_ne!(child.blocks()[1], parent.blocks()[1]);
        assert_eq!(c.allocator().ref_count(parent.blocks()[1]), 1);
        for layer in 0..2 {
            let cache = c.layer(layer);
            for pos in 4..6 {
                let (ps, cs) = (c.slot(&parent, pos), c.slot(&child, pos));
                assert_eq!(cache.k[ps * 2..ps * 2 + 2], cache.k[cs * 2..cs * 2 + 2]);
                assert_eq!(cache.v[ps * 2..ps * 2 + 2], cache.v[cs * 2..cs * 2 + 2]);
            }
        }
        c.release(&mut parent);
        assert_eq!(c.allocator().ref_count(child.blocks()[0]), 1);
        c.release(&mut child);
        assert_eq!(c.allocator().num_free(), 8);
    }
}
