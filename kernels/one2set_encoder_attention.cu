// The One2Set encoder's self-attention: every document of a batch over its own tokens, documents
// packed one after another without padding (block-diagonal, unmasked inside a document). CPU twin:
// segment_attention_forward in src/backend/cpu/segment_attention.rs.
//
// grid: (ceil(max_len / 64), num_heads, num_docs)  block: 128 threads (4 warps, 16 query rows each)
//
// A block takes 64 queries of one head of one document and walks the document's keys in tiles of
// 64, with WMMA (bf16 in, f32 accumulation) for Q·Kᵀ and P·V. Two passes over the keys: the first
// finds each row's softmax max and sum, the second forms the final probabilities and accumulates
// P·V in the warps' accumulator fragments. Recomputing Q·Kᵀ costs one more small tensor-core product
// per tile, and saves rescaling the output, whose fragment layout WMMA does not expose; it also
// keeps shared memory under the 48 KiB static limit (44 KiB at head_dim 64).
//
// Layout: qkv [tokens, 3 * num_heads * HD] (q, then k, then v, biases added), out [tokens,
// num_heads * HD]. Scores scale by 1/sqrt(HD).
#include <mma.h>
#include "common.cuh"

using namespace nvcuda;

namespace {

constexpr int BQ = 64;       // queries per block
constexpr int BK = 64;       // keys per tile
constexpr int S_LD = BK + 4; // f32 score row, padded against bank conflicts (a multiple of 4)

// rows [row0, row0 + 64) of one head's column block into shared memory; rows past `len` are zeros.
template <int HD>
__device__ void load_tile(bf16* dst, const bf16* src, long long row_stride, int row0, int len) {
    constexpr int LD = HD + 8;
    constexpr int CHUNKS = HD / 8;  // 16-byte pieces per row
    for (int i = threadIdx.x; i < 64 * CHUNKS; i += blockDim.x) {
        const int r = i / CHUNKS, ch = i % CHUNKS;
        int4 v = make_int4(0, 0, 0, 0);
        if (row0 + r < len) v = *reinterpret_cast<const int4*>(src + (long long)(row0 + r) * row_stride + ch * 8);
        *reinterpret_cast<int4*>(dst + r * LD + ch * 8) = v;
    }
}

// S[16w .. 16w + 16, 0 .. 64) = Q[16w ..] · K[0 .. 64)ᵀ for this warp's rows.
template <int HD>
__device__ void scores_tile(float* S, const bf16* Qs, const bf16* Ks, int warp) {
    constexpr int LD = HD + 8;
    for (int n = 0; n < BK / 16; ++n) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        wmma::fill_fragment(acc, 0.f);
#pragma unroll
        for (int kk = 0; kk < HD / 16; ++kk) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
            wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> b;
            wmma::load_matrix_sync(a, Qs + warp * 16 * LD + kk * 16, LD);
            wmma::load_matrix_sync(b, Ks + n * 16 * LD + kk * 16, LD);  // Kᵀ: column n is key n
            wmma::mma_sync(acc, a, b, acc);
        }
        wmma::store_matrix_sync(S + warp * 16 * S_LD + n * 16, acc, S_LD, wmma::mem_row_major);
    }
}

template <int HD>
__device__ void encoder_attention(
    bf16* __restrict__ out, const bf16* __restrict__ qkv, const int* __restrict__ doc_start,
    const int* __restrict__ doc_len, int num_heads, float scale) {
    static_assert(HD % 16 == 0 && HD <= 64, "head_dim a multiple of 16, at most 64");
    constexpr int LD = HD + 8;
    __shared__ __align__(32) bf16 Qs[BQ * LD];
    __shared__ __align__(32) bf16 Ks[BK * LD];
    __shared__ __align__(32) bf16 Vs[BK * LD];
    __shared__ __align__(32) float S[BQ * S_LD];

    const int len = doc_len[blockIdx.z];
    const int q0 = blockIdx.x * BQ;
    if (q0 >= len) return;
    const int h = blockIdx.y, d = num_heads * HD;
    const long long stride = 3LL * d;
    const bf16* base = qkv + (long long)doc_start[blockIdx.z] * stride + h * HD;
    const int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;

    load_tile<HD>(Qs, base, stride, q0, len);
    float m[16], l[16];  // this warp's rows, replicated in every lane
#pragma unroll
    for (int r = 0; r < 16; ++r) { m[r] = -INFINITY; l[r] = 0.f; }

    // Pass 1: row max and Σ exp(s - max), online over the key tiles.
    for (int k0 = 0; k0 < len; k0 += BK) {
        __syncthreads();  // the previous tile's readers are done
        load_tile<HD>(Ks, base + d, stride, k0, len);
        __syncthreads();
        scores_tile<HD>(S, Qs, Ks, warp);
        __syncwarp();
#pragma unroll
        for (int r = 0; r < 16; ++r) {
            const float* row = S + (warp * 16 + r) * S_LD;
            const float s0 = k0 + lane < len ? row[lane] * scale : -INFINITY;
            const float s1 = k0 + lane + 32 < len ? row[lane + 32] * scale : -INFINITY;
            const float mn = fmaxf(m[r], warp_max(fmaxf(s0, s1)));
            l[r] = l[r] * __expf(m[r] - mn) + warp_sum(__expf(s0 - mn) + __expf(s1 - mn));
            m[r] = mn;
        }
    }

    // Pass 2: P = exp(s - max) / sum, written over its own scores as bf16, then O += P · V.
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[HD / 16];
#pragma unroll
    for (int n = 0; n < HD / 16; ++n) wmma::fill_fragment(acc[n], 0.f);
    bf16* P = reinterpret_cast<bf16*>(S);  // row r at P + r * 2 * S_LD (same bytes as S's row r)
    constexpr int P_LD = 2 * S_LD;
    for (int k0 = 0; k0 < len; k0 += BK) {
        __syncthreads();
        load_tile<HD>(Ks, base + d, stride, k0, len);
        load_tile<HD>(Vs, base + 2 * d, stride, k0, len);
        __syncthreads();
        scores_tile<HD>(S, Qs, Ks, warp);
        __syncwarp();
#pragma unroll
        for (int r = 0; r < 16; ++r) {
            float* row = S + (warp * 16 + r) * S_LD;
            const float inv = 1.f / l[r];
            const float p0 = k0 + lane < len ? __expf(row[lane] * scale - m[r]) * inv : 0.f;
            const float p1 = k0 + lane + 32 < len ? __expf(row[lane + 32] * scale - m[r]) * inv : 0.f;
            __syncwarp();  // every lane has read the row before any overwrites it
            bf16* prow = P + (warp * 16 + r) * P_LD;
            prow[lane] = to_bf16(p0);
            prow[lane + 32] = to_bf16(p1);
        }
        __syncwarp();
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
            wmma::load_matrix_sync(a, P + warp * 16 * P_LD + kk * 16, P_LD);
#pragma unroll
            for (int n = 0; n < HD / 16; ++n) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> b;
                wmma::load_matrix_sync(b, Vs + kk * 16 * LD + n * 16, LD);
                wmma::mma_sync(acc[n], a, b, acc[n]);
            }
        }
    }

    // The warp's 16 output rows through its own rows of S (HD <= 64 columns fit in S_LD).
    __syncwarp();
#pragma unroll
    for (int n = 0; n < HD / 16; ++n)
        wmma::store_matrix_sync(S + warp * 16 * S_LD + n * 16, acc[n], S_LD, wmma::mem_row_major);
    __syncwarp();
    const long long out_base = (long long)doc_start[blockIdx.z] * d + h * HD;
    for (int i = lane; i < 16 * HD; i += WARP_SIZE) {
        const int r = i / HD, c = i % HD;
        const int q = q0 + warp * 16 + r;
        if (q < len) out[out_base + (long long)q * d + c] = to_bf16(S[(warp * 16 + r) * S_LD + c]);
    }
}

}  // namespace

#define ENCODER_ATTENTION(HD)                                                                    \
    extern "C" __global__ void __launch_bounds__(128) one2set_encoder_attention_hd##HD##_bf16(    \
        bf16* __restrict__ out,             /* [tokens, num_heads * HD] */                       \
        const bf16* __restrict__ qkv,       /* [tokens, 3 * num_heads * HD] */                   \
        const int* __restrict__ doc_start,  /* [docs] first token of each document */            \
        const int* __restrict__ doc_len,    /* [docs] its length */                              \
        int num_heads, float scale) {                                                            \
        encoder_attention<HD>(out, qkv, doc_start, doc_len, num_heads, scale);                   \
    }

ENCODER_ATTENTION(16)
ENCODER_ATTENTION(32)
ENCODER_ATTENTION(64)
