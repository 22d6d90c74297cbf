// Causal attention over the paged KV cache for a batch of query chunks of any length (a prefill
// chunk, a forced-text chunk, one decode token), with grouped-query attention: vLLM's paged
// attention with flash-decoding's split-KV. CPU twin: `paged_attention_forward`
// (src/backend/cpu/attention.rs).
//
// Layout: q and out [num_tokens, num_heads, head_dim]; each layer's cache
// [num_blocks, block_size, num_kv_heads, head_dim]; block_tables [num_seqs, max_blocks_per_seq]
// maps a sequence's logical block to a physical one. Token t of sequence token_seq[t] sits at
// position token_pos[t] and attends to positions 0..=token_pos[t] of its sequence; the chunk's own
// keys and values are in the cache already, so causality inside a chunk is that bound alone.
//
// paged_attention_bf16_d<D>_r<R> (the fast path)
//   grid: (ceil(num_tokens / tile_tokens), num_kv_heads * head_chunks, num_splits)
//   block: 128 threads (4 warps).
//   A CTA serves up to R query rows (tile_tokens consecutive tokens x rows_h query heads of one
//   GQA group) against one KV head, so each key and value row is read from memory once for all of
//   them. A warp takes 32 / (D / 8) keys at a time, D / 8 lanes per key, each lane holding 8
//   head-dim elements (one 16-byte load); warps interleave over the CTA's keys, keep their own
//   online-softmax state, and merge through shared memory at the end. With num_splits > 1 a CTA
//   covers keys [split * partition, (split + 1) * partition) only and writes an unnormalised f32
//   partial (max, sum, acc) that paged_attention_reduce_bf16 merges.
//   Tokens of a tile that belong to different sequences (a decode batch packed by the host's
//   heuristic) are served one run of equal token_seq after another.
//
// paged_attention_reduce_bf16: grid (num_tokens, num_heads), block 128 threads over head_dim.
// paged_attention_naive_bf16: the second reference, one warp per (token, head) walking the block
//   table key by key; grid (num_tokens, num_heads), block 32 threads.
//
// Numerics: scores, softmax statistics and accumulators are f32 (bf16 partial sums over thousands
// of keys would drift far past the bf16 tolerance); the fast path works in base 2 (q is scaled by
// log2(e) / sqrt(head_dim) once, then exp2f), which is the hardware's native exponential.
//
// Robustness: the host validates every shape; device-side values it cannot see are clamped so that
// nothing is read out of bounds: positions to max_context - 1, physical blocks >= num_blocks to
// block 0. A token whose token_seq >= num_seqs is skipped and its output row left unwritten.
#include "common.cuh"

namespace {

constexpr int NUM_WARPS = 4;
constexpr int NUM_THREADS = NUM_WARPS * WARP_SIZE;
constexpr int ELEMS = 8;  // head-dim elements per lane: one 16-byte load

// Two bf16 packed in a 32-bit word (element e in the low half) widened exactly to f32.
__device__ __forceinline__ float bf16_lo(unsigned w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(unsigned w) { return __uint_as_float(w & 0xffff0000u); }

__device__ __forceinline__ void unpack8(const uint4& u, float (&x)[ELEMS]) {
    x[0] = bf16_lo(u.x); x[1] = bf16_hi(u.x);
    x[2] = bf16_lo(u.y); x[3] = bf16_hi(u.y);
    x[4] = bf16_lo(u.z); x[5] = bf16_hi(u.z);
    x[6] = bf16_lo(u.w); x[7] = bf16_hi(u.w);
}

// Elements e0..e0+8 of a head-dim row starting at `row`, zero past head_dim. `aligned` (head_dim a
// multiple of 8 and 16-byte aligned buffers, checked on the host) takes one 16-byte load; otherwise
// four 4-byte loads (head_dim is even and buffers 4-byte aligned).
__device__ __forceinline__ uint4 load_row8(const bf16* row, int e0, int head_dim, bool aligned) {
    uint4 u = make_uint4(0u, 0u, 0u, 0u);
    if (aligned) {
        if (e0 < head_dim) u = __ldg(reinterpret_cast<const uint4*>(row + e0));
    } else {
        const unsigned* w = reinterpret_cast<const unsigned*>(row + e0);
        if (e0 + 0 < head_dim) u.x = __ldg(w + 0);
        if (e0 + 2 < head_dim) u.y = __ldg(w + 1);
        if (e0 + 4 < head_dim) u.z = __ldg(w + 2);
        if (e0 + 6 < head_dim) u.w = __ldg(w + 3);
    }
    return u;
}

// Logical block of position p: a shift when block_size is a power of two (block_shift >= 0).
__device__ __forceinline__ int block_of(int p, int block_size, int block_shift) {
    return block_shift >= 0 ? p >> block_shift : p / block_size;
}

// One CTA of the fast path; see the header. D: head_dim rounded up to 32, 64, 128 or 256;
// R: query rows per CTA (1, 2, 4 or 8).
template <int D, int R>
__device__ __forceinline__ void paged_attention_cta(
    bf16* __restrict__ out,                 // [num_tokens, num_heads, head_dim]
    float* __restrict__ part_ml,            // [num_tokens, num_heads, num_splits, 2] (max, sum)
    float* __restrict__ part_acc,           // [num_tokens, num_heads, num_splits, head_dim]
    const bf16* __restrict__ q,             // [num_tokens, num_heads, head_dim]
    const bf16* __restrict__ k_cache,       // [num_blocks, block_size, num_kv_heads, head_dim]
    const bf16* __restrict__ v_cache,       // [num_blocks, block_size, num_kv_heads, head_dim]
    const unsigned* __restrict__ token_seq,     // [num_tokens]
    const unsigned* __restrict__ token_pos,     // [num_tokens]
    const unsigned* __restrict__ block_tables,  // [num_seqs, max_blocks_per_seq]
    int num_tokens, int num_seqs, int num_heads, int num_kv_heads, int head_dim, int block_size,
    int block_shift, int max_blocks_per_seq, int num_blocks, int max_context, int tile_tokens,
    int rows_h, int head_chunks, int partition, int num_splits, int aligned_i, float q_scale) {
    constexpr int G = D / ELEMS;            // lanes per key
    constexpr int KPW = WARP_SIZE / G;      // keys per warp step
    constexpr int U = R <= 2 ? 4 : 2;       // steps whose loads are issued together
    constexpr int BATCH = KPW * U;          // keys per warp batch, at most 32
    static_assert(BATCH <= WARP_SIZE, "a batch must fit the block-table window");

    __shared__ float s_m[NUM_WARPS][R];
    __shared__ float s_l[NUM_WARPS][R];
    __shared__ float s_acc[NUM_WARPS][R][D];

    const bool aligned = aligned_i != 0;
    const int lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
    const int gi = lane / G;                // which key of the step this lane works on
    const int e0 = (lane % G) * ELEMS;      // its head-dim elements
    const int group = num_heads / num_kv_heads;
    const int t0 = blockIdx.x * tile_tokens;
    const int t_end = min(t0 + tile_tokens, num_tokens);
    const int kv_head = blockIdx.y / head_chunks;
    const int h0 = kv_head * group + (blockIdx.y % head_chunks) * rows_h;
    const int h_end = min(h0 + rows_h, (kv_head + 1) * group);
    const int split = blockIdx.z;
    const int kb = split * partition;       // first key of this CTA's split
    const size_t slot_stride = (size_t)num_kv_heads * head_dim;
    const bf16* k_head = k_cache + (size_t)kv_head * head_dim;
    const bf16* v_head = v_cache + (size_t)kv_head * head_dim;

    for (int start = t0; start < t_end;) {
        // The run of tokens [start, end) of one sequence; every thread computes the same.
        const unsigned seq = token_seq[start];
        int end = start + 1;
        while (end < t_end && token_seq[end] == seq) ++end;

        // Row r is token t0 + r / rows_h, query head h0 + r % rows_h; pos -1 marks an idle row.
        int pos[R];
        int max_pos = -1;
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int t = t0 + r / rows_h, h = h0 + r % rows_h;
            const bool active = t >= start && t < end && h < h_end && seq < (unsigned)num_seqs;
            pos[r] = active ? (int)min(token_pos[t], (unsigned)(max_context - 1)) : -1;
            max_pos = max(max_pos, pos[r]);
        }
        const int ke = min(max_pos + 1, kb + partition);  // keys [kb, ke) are read

        if (kb < ke) {  // uniform over the CTA: the barriers below are reached by every thread
            float qv[R][ELEMS], acc[R][ELEMS], m[R], l[R];
#pragma unroll
            for (int r = 0; r < R; ++r) {
                m[r] = -INFINITY;
                l[r] = 0.f;
                uint4 u = make_uint4(0u, 0u, 0u, 0u);
                if (pos[r] >= 0) {
                    const int t = t0 + r / rows_h, h = h0 + r % rows_h;
                    u = load_row8(q + ((size_t)t * num_heads + h) * head_dim, e0, head_dim, aligned);
                }
                unpack8(u, qv[r]);
#pragma unroll
                for (int e = 0; e < ELEMS; ++e) {
                    qv[r][e] *= q_scale;
                    acc[r][e] = 0.f;
                }
            }

            // Each lane holds one entry of a 32-block window of the block table, handed to the
            // lanes that need it by a shuffle: one table load per 32 blocks instead of one per key.
            const unsigned* table = block_tables + (size_t)seq * max_blocks_per_seq;
            const int last_blk = block_of(ke - 1, block_size, block_shift);
            int win_base = -WARP_SIZE;
            unsigned win = 0;

            for (int wb = kb + warp * BATCH; wb < ke; wb += NUM_WARPS * BATCH) {
                const int first_b = block_of(wb, block_size, block_shift);
                const int batch_last_b = block_of(min(wb + BATCH, ke) - 1, block_size, block_shift);
                if (batch_last_b >= win_base + WARP_SIZE) {  // warp-uniform
                    win_base = first_b;
                    const int b = win_base + lane;
                    win = b <= last_blk ? __ldg(table + b) : 0u;
                }
                uint4 kr[U], vr[U];
#pragma unroll
                for (int u = 0; u < U; ++u) {
                    // Keys past the range read key wb (in range, so never an unwritten slot)
                    // and are masked below.
                    const int j = wb + u * KPW + gi;
                    const int jj = j < ke ? j : wb;
                    const int b = block_of(jj, block_size, block_shift);
                    unsigned phys = __shfl_sync(FULL_MASK, win, b - win_base);
                    phys = phys < (unsigned)num_blocks ? phys : 0u;
                    const size_t off =
                        ((size_t)phys * block_size + (jj - b * block_size)) * slot_stride;
                    kr[u] = load_row8(k_head + off, e0, head_dim, aligned);
                    vr[u] = load_row8(v_head + off, e0, head_dim, aligned);
                }
#pragma unroll
                for (int u = 0; u < U; ++u) {
                    const int j = wb + u * KPW + gi;
                    float kf[ELEMS], vf[ELEMS];
                    unpack8(kr[u], kf);
                    unpack8(vr[u], vf);
#pragma unroll
                    for (int r = 0; r < R; ++r) {
                        float s = 0.f;
#pragma unroll
                        for (int e = 0; e < ELEMS; ++e) s = fmaf(qv[r][e], kf[e], s);
#pragma unroll
                        for (int o = G / 2; o > 0; o >>= 1) s += __shfl_xor_sync(FULL_MASK, s, o);
                        s = (j < ke && j <= pos[r]) ? s : -INFINITY;
                        float mx = s;
#pragma unroll
                        for (int o = G; o < WARP_SIZE; o <<= 1)
                            mx = fmaxf(mx, __shfl_xor_sync(FULL_MASK, mx, o));
                        if (mx == -INFINITY) continue;  // warp-uniform: no visible key this step
                        if (mx > m[r]) {                // warp-uniform: rescale only on a new max
                            const float alpha = exp2f(m[r] - mx);
                            l[r] *= alpha;
#pragma unroll
                            for (int e = 0; e < ELEMS; ++e) acc[r][e] *= alpha;
                            m[r] = mx;
                        }
                        const float p = exp2f(s - m[r]);
                        l[r] += p;
#pragma unroll
                        for (int e = 0; e < ELEMS; ++e) acc[r][e] = fmaf(p, vf[e], acc[r][e]);
                    }
                }
            }

            // The warp's key groups share m (it is warp-uniform), so their sums just add.
#pragma unroll
            for (int r = 0; r < R; ++r) {
#pragma unroll
                for (int o = G; o < WARP_SIZE; o <<= 1) {
                    l[r] += __shfl_xor_sync(FULL_MASK, l[r], o);
#pragma unroll
                    for (int e = 0; e < ELEMS; ++e)
                        acc[r][e] += __shfl_xor_sync(FULL_MASK, acc[r][e], o);
                }
                if (lane < G) {
#pragma unroll
                    for (int e = 0; e < ELEMS; ++e) s_acc[warp][r][e0 + e] = acc[r][e];
                }
                if (lane == 0) {
                    s_m[warp][r] = m[r];
                    s_l[warp][r] = l[r];
                }
            }
            __syncthreads();

            // Merge the warps; a row with no key in this split has max -inf in every warp.
            for (int idx = threadIdx.x; idx < R * head_dim; idx += NUM_THREADS) {
                const int r = idx / head_dim, d = idx % head_dim;
                float mmax = -INFINITY;
#pragma unroll
                for (int w = 0; w < NUM_WARPS; ++w) mmax = fmaxf(mmax, s_m[w][r]);
                if (mmax == -INFINITY) continue;
                float sum = 0.f, o = 0.f;
#pragma unroll
                for (int w = 0; w < NUM_WARPS; ++w) {
                    if (s_m[w][r] == -INFINITY) continue;
                    const float c = exp2f(s_m[w][r] - mmax);
                    sum += s_l[w][r] * c;
                    o += s_acc[w][r][d] * c;
                }
                const size_t th = (size_t)(t0 + r / rows_h) * num_heads + (h0 + r % rows_h);
                if (num_splits == 1) {
                    out[th * head_dim + d] = to_bf16(o / sum);
                } else {
                    const size_t ps = th * num_splits + split;
                    part_acc[ps * head_dim + d] = o;
                    if (d == 0) {
                        part_ml[2 * ps] = mmax;
                        part_ml[2 * ps + 1] = sum;
                    }
                }
            }
            __syncthreads();  // the shared arrays are reused by the next run of the tile
        }
        start = end;
    }
}

}  // namespace

// __launch_bounds__(128, 1): with no minimum, ptxas 13.0 caps the R = 1 kernels at 96 registers
// and spills; with it they take 113 and spill nothing (4 CTAs per SM still fit).
#define PAGED_ATTENTION_ENTRY(D, R)                                                               \
    extern "C" __global__ void __launch_bounds__(NUM_THREADS, 1) paged_attention_bf16_d##D##_r##R( \
        bf16* __restrict__ out, float* __restrict__ part_ml, float* __restrict__ part_acc,       \
        const bf16* __restrict__ q, const bf16* __restrict__ k_cache,                            \
        const bf16* __restrict__ v_cache, const unsigned* __restrict__ token_seq,                \
        const unsigned* __restrict__ token_pos, const unsigned* __restrict__ block_tables,       \
        int num_tokens, int num_seqs, int num_heads, int num_kv_heads, int head_dim,             \
        int block_size, int block_shift, int max_blocks_per_seq, int num_blocks, int max_context, \
        int tile_tokens, int rows_h, int head_chunks, int partition, int num_splits,             \
        int aligned, float q_scale) {                                                            \
        paged_attention_cta<D, R>(out, part_ml, part_acc, q, k_cache, v_cache, token_seq,        \
                                  token_pos, block_tables, num_tokens, num_seqs, num_heads,      \
                                  num_kv_heads, head_dim, block_size, block_shift,               \
                                  max_blocks_per_seq, num_blocks, max_context, tile_tokens,      \
                                  rows_h, head_chunks, partition, num_splits, aligned, q_scale); \
    }

// Parameters (shapes as in paged_attention_cta): out, part_ml, part_acc, q, k_cache, v_cache,
// token_seq, token_pos, block_tables, then the sizes and the launch plan.
PAGED_ATTENTION_ENTRY(32, 1)
PAGED_ATTENTION_ENTRY(32, 2)
PAGED_ATTENTION_ENTRY(32, 4)
PAGED_ATTENTION_ENTRY(32, 8)
PAGED_ATTENTION_ENTRY(64, 1)
PAGED_ATTENTION_ENTRY(64, 2)
PAGED_ATTENTION_ENTRY(64, 4)
PAGED_ATTENTION_ENTRY(64, 8)
PAGED_ATTENTION_ENTRY(128, 1)
PAGED_ATTENTION_ENTRY(128, 2)
PAGED_ATTENTION_ENTRY(128, 4)
PAGED_ATTENTION_ENTRY(128, 8)
PAGED_ATTENTION_ENTRY(256, 1)
PAGED_ATTENTION_ENTRY(256, 2)
PAGED_ATTENTION_ENTRY(256, 4)
PAGED_ATTENTION_ENTRY(256, 8)

// Merges the split-KV partials of one (token, head): out = sum_s acc_s 2^(m_s - M) /
// sum_s l_s 2^(m_s - M), M the largest m_s, over the splits that reach the token's position.
// grid: (num_tokens, num_heads)  block: 128 threads over head_dim.
extern "C" __global__ void paged_attention_reduce_bf16(
    bf16* __restrict__ out,                  // [num_tokens, num_heads, head_dim]
    const float* __restrict__ part_ml,       // [num_tokens, num_heads, num_splits, 2]
    const float* __restrict__ part_acc,      // [num_tokens, num_heads, num_splits, head_dim]
    const unsigned* __restrict__ token_seq,  // [num_tokens]
    const unsigned* __restrict__ token_pos,  // [num_tokens]
    int num_seqs, int num_heads, int head_dim, int max_context, int partition, int num_splits) {
    const int t = blockIdx.x, h = blockIdx.y;
    if (token_seq[t] >= (unsigned)num_seqs) return;
    const int pos = (int)min(token_pos[t], (unsigned)(max_context - 1));
    const int n = min(pos / partition + 1, num_splits);  // splits 0..n-1 each saw >= 1 key
    const size_t ps0 = ((size_t)t * num_heads + h) * num_splits;
    float mmax = -INFINITY;
    for (int s = 0; s < n; ++s) mmax = fmaxf(mmax, part_ml[2 * (ps0 + s)]);
    float sum = 0.f;
    for (int s = 0; s < n; ++s)
        sum += part_ml[2 * (ps0 + s) + 1] * exp2f(part_ml[2 * (ps0 + s)] - mmax);
    const float inv = 1.f / sum;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float o = 0.f;
        for (int s = 0; s < n; ++s)
            o += part_acc[(ps0 + s) * head_dim + d] * exp2f(part_ml[2 * (ps0 + s)] - mmax);
        out[((size_t)t * num_heads + h) * head_dim + d] = to_bf16(o * inv);
    }
}

// The second reference: one warp per (token, head) walking the block table key by key, lane i
// holding head-dim elements i, i + 32, ...; plain loads and an online softmax with expf.
// grid: (num_tokens, num_heads)  block: 32 threads.
extern "C" __global__ void paged_attention_naive_bf16(
    bf16* __restrict__ out,                     // [num_tokens, num_heads, head_dim]
    const bf16* __restrict__ q,                 // [num_tokens, num_heads, head_dim]
    const bf16* __restrict__ k_cache,           // [num_blocks, block_size, num_kv_heads, head_dim]
    const bf16* __restrict__ v_cache,           // [num_blocks, block_size, num_kv_heads, head_dim]
    const unsigned* __restrict__ token_seq,     // [num_tokens]
    const unsigned* __restrict__ token_pos,     // [num_tokens]
    const unsigned* __restrict__ block_tables,  // [num_seqs, max_blocks_per_seq]
    int num_seqs, int num_heads, int num_kv_heads, int head_dim, int block_size,
    int max_blocks_per_seq, int num_blocks, int max_context, float scale) {
    constexpr int PER_LANE = 256 / WARP_SIZE;  // head_dim <= 256
    const int t = blockIdx.x, h = blockIdx.y, lane = threadIdx.x;
    const unsigned seq = token_seq[t];
    if (seq >= (unsigned)num_seqs) return;
    const int pos = (int)min(token_pos[t], (unsigned)(max_context - 1));
    const int kv_head = h / (num_heads / num_kv_heads);
    const unsigned* table = block_tables + (size_t)seq * max_blocks_per_seq;
    const bf16* qh = q + ((size_t)t * num_heads + h) * head_dim;
    float qd[PER_LANE], acc[PER_LANE];
#pragma unroll
    for (int i = 0; i < PER_LANE; ++i) {
        const int d = lane + i * WARP_SIZE;
        qd[i] = d < head_dim ? to_float(qh[d]) : 0.f;
        acc[i] = 0.f;
    }
    float m = -INFINITY, l = 0.f;
    for (int j = 0; j <= pos; ++j) {
        unsigned phys = table[j / block_size];
        phys = phys < (unsigned)num_blocks ? phys : 0u;
        const size_t base =
            (((size_t)phys * block_size + j % block_size) * num_kv_heads + kv_head) * head_dim;
        float s = 0.f;
#pragma unroll
        for (int i = 0; i < PER_LANE; ++i) {
            const int d = lane + i * WARP_SIZE;
            if (d < head_dim) s += qd[i] * to_float(k_cache[base + d]);
        }
        s = warp_sum(s) * scale;
        const float m_new = fmaxf(m, s);
        const float c = expf(m - m_new), p = expf(s - m_new);
        l = l * c + p;
#pragma unroll
        for (int i = 0; i < PER_LANE; ++i) {
            const int d = lane + i * WARP_SIZE;
            if (d < head_dim) acc[i] = acc[i] * c + p * to_float(v_cache[base + d]);
        }
        m = m_new;
    }
    bf16* oh = out + ((size_t)t * num_heads + h) * head_dim;
#pragma unroll
    for (int i = 0; i < PER_LANE; ++i) {
        const int d = lane + i * WARP_SIZE;
        if (d < head_dim) oh[d] = to_bf16(acc[i] / l);
    }
}
