// RoPE (transformers' rotate_half: the two halves of a head rotate together) applied to the
// queries and keys of the fused QKV projection, and the keys and values written into the paged
// cache at their slots, in one pass over the QKV rows. CPU twins: RopeTable::rope_forward and
// PagedKvCache::write_kv. Frequencies (with linear or llama3 scaling) come from the host table.
// grid: (num_tokens)  block: 128 threads, a strided loop over (head, pair) of the row.
#include "common.cuh"

extern "C" __global__ void rope_write_kv_bf16(
    bf16* __restrict__ q_out,              // [num_tokens, num_heads * head_dim]
    bf16* __restrict__ k_cache,            // [num_slots, num_kv_heads * head_dim]
    bf16* __restrict__ v_cache,            // [num_slots, num_kv_heads * head_dim]
    const bf16* __restrict__ qkv,          // [num_tokens, (num_heads + 2 * num_kv_heads) * head_dim]
    const uint32_t* __restrict__ token_pos,// [num_tokens]
    const long long* __restrict__ slot_mapping, // [num_tokens], -1 = padding (not written)
    const float* __restrict__ inv_freq,    // [head_dim / 2]
    int num_heads, int num_kv_heads, int head_dim) {
    const long long t = blockIdx.x;
    const int half = head_dim / 2;
    const int q_dim = num_heads * head_dim, kv_dim = num_kv_heads * head_dim;
    const bf16* row = qkv + t * (q_dim + 2 * kv_dim);
    const float pos = (float)token_pos[t];
    const long long slot = slot_mapping[t];
    // Queries and keys: (num_heads + num_kv_heads) heads of `half` rotation pairs.
    for (int p = threadIdx.x; p < (num_heads + num_kv_heads) * half; p += blockDim.x) {
        const int head = p / half, i = p % half;
        // Angle in f32 as transformers computes it (inv_freq · position); precise sincosf, since
        // angles reach thousands of radians.
        float s, c;
        sincosf(inv_freq[i] * pos, &s, &c);
        const float x1 = to_float(row[head * head_dim + i]);
        const float x2 = to_float(row[head * head_dim + i + half]);
        const bf16 a = to_bf16(x1 * c - x2 * s), b = to_bf16(x2 * c + x1 * s);
        if (head < num_heads) {
            q_out[t * q_dim + head * head_dim + i] = a;
            q_out[t * q_dim + head * head_dim + i + half] = b;
        } else if (slot >= 0) {
            const int kh = head - num_heads;
            k_cache[slot * kv_dim + kh * head_dim + i] = a;
            k_cache[slot * kv_dim + kh * head_dim + i + half] = b;
        }
    }
    if (slot < 0) return;
    for (int i = threadIdx.x; i < kv_dim; i += blockDim.x) v_cache[slot * kv_dim + i] = row[q_dim + kv_dim + i];
}
