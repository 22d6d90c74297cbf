// The attention of One2Set's parallel control-code decoding, one greedy step of every active slot
// of every document of a batch (rows = active slots, ascending, so a document's rows are
// contiguous). CPU twins: slot_attention_forward and segment_attention_forward in
// src/backend/cpu/segment_attention.rs.
//
// one2set_slot_attention_bf16 — self-attention over each slot's own tokens 0..=step.
//   grid: rows  block: num_heads * 32 threads (a warp per head; lanes stride over head_dim).
//   The row's k and v (with biases) are written into the slot's cache at `step` and used from
//   registers for the newest key, so no lane reads what another lane has just written.
//
// one2set_cross_attention_hd*_bf16 — cross-attention of a document's active slots over its encoder
//   output. The N slots of a document are the query group of one set of keys and values, as in GQA:
//   grid: (groups, num_heads)  block: 128 threads, one block per (document, head), so the keys and
//   values of a document are read from memory once per head per step whatever the number of slots.
//   Pass 1: a thread per key holds the key in registers and scores it against every query of the
//   group (queries in shared memory, read as broadcasts). Pass 2: softmax per query row (a warp per
//   row); head 0's probabilities are also the copy distribution (`copy_attn`, when not null).
//   Pass 3: each warp accumulates P·V over a quarter of the keys for all queries in registers, and
//   the four partial sums are added in warp order (deterministic).
//   Dynamic shared memory: group_rows * (HD + round4(max_len)) floats.
#include "common.cuh"

extern "C" __global__ void one2set_slot_attention_bf16(
    bf16* __restrict__ out,          // [rows, d]
    bf16* __restrict__ k_cache,      // [slots, max_len, d]
    bf16* __restrict__ v_cache,      // [slots, max_len, d]
    const bf16* __restrict__ qkv,    // [rows, 3 * d] without biases
    const float* __restrict__ bias,  // [3 * d]
    const int* __restrict__ slots,   // [rows]
    int step, int max_len, int num_heads, int head_dim, float scale) {
    constexpr int MAX_PER_LANE = 4;  // head_dim <= 128
    const int r = blockIdx.x;
    const int h = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    if (h >= num_heads) return;
    const int d = num_heads * head_dim;
    const bf16* row = qkv + (long long)r * 3 * d;
    const long long slot_base = (long long)slots[r] * max_len * d;
    float q[MAX_PER_LANE], k[MAX_PER_LANE], v[MAX_PER_LANE], acc[MAX_PER_LANE];
    float dot = 0.f;
#pragma unroll
    for (int t = 0; t < MAX_PER_LANE; ++t) {
        const int c = h * head_dim + lane + t * WARP_SIZE;
        q[t] = k[t] = v[t] = acc[t] = 0.f;
        if (lane + t * WARP_SIZE < head_dim) {
            q[t] = to_float(row[c]) + bias[c];
            // The cache holds bf16, and the newest key is used as the cache would return it.
            k[t] = to_float(to_bf16(to_float(row[d + c]) + bias[d + c]));
            v[t] = to_float(to_bf16(to_float(row[2 * d + c]) + bias[2 * d + c]));
            k_cache[slot_base + (long long)step * d + c] = to_bf16(k[t]);
            v_cache[slot_base + (long long)step * d + c] = to_bf16(v[t]);
            dot += q[t] * k[t];
        }
    }
    // Online softmax over keys 0..=step, the newest from registers.
    float m = warp_sum(dot) * scale, l = 1.f;
#pragma unroll
    for (int t = 0; t < MAX_PER_LANE; ++t) acc[t] = v[t];
    for (int j = 0; j < step; ++j) {
        const long long at = slot_base + (long long)j * d + h * head_dim;
        float s = 0.f;
#pragma unroll
        for (int t = 0; t < MAX_PER_LANE; ++t)
            if (lane + t * WARP_SIZE < head_dim) s += q[t] * to_float(k_cache[at + lane + t * WARP_SIZE]);
        s = warp_sum(s) * scale;
        const float mn = fmaxf(m, s), a = __expf(m - mn), p = __expf(s - mn);
        l = l * a + p;
#pragma unroll
        for (int t = 0; t < MAX_PER_LANE; ++t)
            if (lane + t * WARP_SIZE < head_dim)
                acc[t] = acc[t] * a + p * to_float(v_cache[at + lane + t * WARP_SIZE]);
        m = mn;
    }
#pragma unroll
    for (int t = 0; t < MAX_PER_LANE; ++t)
        if (lane + t * WARP_SIZE < head_dim)
            out[(long long)r * d + h * head_dim + lane + t * WARP_SIZE] = to_bf16(acc[t] / l);
}

namespace {

constexpr int CROSS_THREADS = 128;
constexpr int CROSS_WARPS = CROSS_THREADS / WARP_SIZE;
constexpr int MAX_GROUP = 32;  // queries a block serves per pass over the keys

template <int HD>
__device__ void cross_attention(
    bf16* __restrict__ out, float* __restrict__ copy_attn, const bf16* __restrict__ q,
    const float* __restrict__ q_bias, const bf16* __restrict__ kv, const int* __restrict__ groups,
    const int* __restrict__ doc_start, const int* __restrict__ doc_len, int num_heads,
    int copy_stride, int score_ld, float scale) {
    static_assert(HD % 8 == 0 && HD <= 128, "head_dim a multiple of 8, at most 128");
    constexpr int PER_LANE = (HD + WARP_SIZE - 1) / WARP_SIZE;
    extern __shared__ __align__(16) float smem[];
    const int row0 = groups[3 * blockIdx.x], nrows = groups[3 * blockIdx.x + 1];
    const int doc = groups[3 * blockIdx.x + 2];
    const int h = blockIdx.y, d = num_heads * HD;
    const int len = doc_len[doc];
    const bf16* keys = kv + (long long)doc_start[doc] * 2 * d + h * HD;  // rows of 2d: k, then v
    const bf16* vals = keys + d;
    const int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    float* qs = smem;                     // [MAX_GROUP, HD] scaled queries; later the output
    float* S = smem + MAX_GROUP * HD;     // [MAX_GROUP, score_ld] scores, then probabilities

    for (int g0 = 0; g0 < nrows; g0 += MAX_GROUP) {
        const int nq = min(MAX_GROUP, nrows - g0);
        __syncthreads();  // the previous chunk's readers of qs and S are done
        for (int i = threadIdx.x; i < nq * HD; i += CROSS_THREADS) {
            const int qi = i / HD, c = i % HD;
            qs[i] = (to_float(q[(long long)(row0 + g0 + qi) * d + h * HD + c]) + q_bias[h * HD + c]) * scale;
        }
        __syncthreads();

        // Pass 1: scores, a thread per key.
        for (int j = threadIdx.x; j < len; j += CROSS_THREADS) {
            float kr[HD];
            const bf16* kj = keys + (long long)j * 2 * d;
#pragma unroll
            for (int c = 0; c < HD; c += 8) {
                const int4 raw = *reinterpret_cast<const int4*>(kj + c);
                const bf16* e = reinterpret_cast<const bf16*>(&raw);
#pragma unroll
                for (int t = 0; t < 8; ++t) kr[c + t] = to_float(e[t]);
            }
            for (int qi = 0; qi < nq; ++qi) {
                const float4* qv = reinterpret_cast<const float4*>(qs + qi * HD);
                float s = 0.f;
#pragma unroll
                for (int c = 0; c < HD / 4; ++c) {
                    const float4 x = qv[c];
                    s += x.x * kr[4 * c] + x.y * kr[4 * c + 1] + x.z * kr[4 * c + 2] + x.w * kr[4 * c + 3];
                }
                S[qi * score_ld + j] = s;
            }
        }
        __syncthreads();

        // Pass 2: softmax of every query row.
        for (int qi = warp; qi < nq; qi += CROSS_WARPS) {
            float* row = S + qi * score_ld;
            float mx = -INFINITY;
            for (int j = lane; j < len; j += WARP_SIZE) mx = fmaxf(mx, row[j]);
            mx = warp_max(mx);
            float sum = 0.f;
            for (int j = lane; j < len; j += WARP_SIZE) {
                const float e = __expf(row[j] - mx);
                row[j] = e;
                sum += e;
            }
            const float inv = 1.f / warp_sum(sum);
            float* copy = (copy_attn != nullptr && h == 0)
                              ? copy_attn + (long long)(row0 + g0 + qi) * copy_stride : nullptr;
            for (int j = lane; j < len; j += WARP_SIZE) {
                const float p = row[j] * inv;
                row[j] = p;
                if (copy != nullptr) copy[j] = p;
            }
        }
        __syncthreads();

        // Pass 3: P·V, a warp per quarter of the keys, lanes over head_dim.
        float acc[MAX_GROUP][PER_LANE];
#pragma unroll
        for (int qi = 0; qi < MAX_GROUP; ++qi)
#pragma unroll
            for (int t = 0; t < PER_LANE; ++t) acc[qi][t] = 0.f;
        for (int j = warp; j < len; j += CROSS_WARPS) {
            float vr[PER_LANE];
#pragma unroll
            for (int t = 0; t < PER_LANE; ++t) {
                const int c = lane + t * WARP_SIZE;
                vr[t] = c < HD ? to_float(vals[(long long)j * 2 * d + c]) : 0.f;
            }
#pragma unroll
            for (int qi = 0; qi < MAX_GROUP; ++qi) {
                if (qi < nq) {
                    const float p = S[qi * score_ld + j];
#pragma unroll
                    for (int t = 0; t < PER_LANE; ++t) acc[qi][t] += p * vr[t];
                }
            }
        }
        // Partial sums into qs (free now), warp after warp so the order is fixed.
        for (int w = 0; w < CROSS_WARPS; ++w) {
            if (warp == w) {
#pragma unroll
                for (int qi = 0; qi < MAX_GROUP; ++qi) {
                    if (qi < nq) {
#pragma unroll
                        for (int t = 0; t < PER_LANE; ++t) {
                            const int c = lane + t * WARP_SIZE;
                            if (c < HD) qs[qi * HD + c] = (w == 0 ? 0.f : qs[qi * HD + c]) + acc[qi][t];
                        }
                    }
                }
            }
            __syncthreads();
        }
        for (int i = threadIdx.x; i < nq * HD; i += CROSS_THREADS) {
            const int qi = i / HD, c = i % HD;
            out[(long long)(row0 + g0 + qi) * d + h * HD + c] = to_bf16(qs[i]);
        }
    }
}

}  // namespace

#define CROSS_ATTENTION(HD)                                                                      \
    extern "C" __global__ void __launch_bounds__(CROSS_THREADS) one2set_cross_attention_hd##HD##_bf16( \
        bf16* __restrict__ out,            /* [rows, num_heads * HD] */                          \
        float* __restrict__ copy_attn,     /* [rows, copy_stride] head 0's probabilities, or null */ \
        const bf16* __restrict__ q,        /* [rows, num_heads * HD] without bias */             \
        const float* __restrict__ q_bias,  /* [num_heads * HD] */                                \
        const bf16* __restrict__ kv,       /* [tokens, 2 * num_heads * HD] k, v with biases */   \
        const int* __restrict__ groups,    /* [groups, 3] first row, rows, document */           \
        const int* __restrict__ doc_start, /* [docs] first token of each document */             \
        const int* __restrict__ doc_len,   /* [docs] its length */                               \
        int num_heads, int copy_stride, int score_ld, float scale) {                             \
        cross_attention<HD>(out, copy_attn, q, q_bias, kv, groups, doc_start, doc_len,           \
                            num_heads, copy_stride, score_ld, scale);                            \
    }

CROSS_ATTENTION(16)
CROSS_ATTENTION(32)
CROSS_ATTENTION(64)
CROSS_ATTENTION(128)
