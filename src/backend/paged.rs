//! The paged KV cache as the backends see it (vLLM's layout): what is cached per token, one
//! layer's blocks on the host and the batch's per-token view. Shared by the portable CPU attention,
//! its AVX-512 twin and the device cache, so that none of them reaches up into the cache
//! ([`crate::kv_cache`]) that owns the memory and the block bookkeeping.

/// Where the cache of one layer lives and how it is paged.
#[derive(Clone, Copy)]
pub struct PagedLayer<'a> {
    pub k: &'a [f32], // [num_blocks, block_size, num_kv_heads, head_dim]
    pub v: &'a [f32], // [num_blocks, block_size, num_kv_heads, head_dim]
    pub block_size: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

/// Per-token view of the batch: which sequence a token belongs to and its position.
pub struct TokenContext<'a> {
    pub token_seq: &'a [u32],          // [tokens]: index into block_tables
    pub token_pos: &'a [u32],          // [tokens]: position; attends to 0..=pos
    pub block_tables: &'a [&'a [u32]], // [seqs][logical block] -> physical block
}

/// Shape of what is cached per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheShape {
    pub num_layers: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

impl CacheShape {
    /// f32 keys and values of every layer for one token.
    pub fn bytes_per_token(&self) -> usize {
        2 * self.num_layers * self.num_kv_heads * self.head_dim * std::mem::size_of::<f32>()
    }
}
