// The fused finish of a One2Set greedy step: for every active row, the argmax of the
// copy-augmented distribution p(w) = p_gen · softmax(logits)[w] + (1 - p_gen) · Σ_{j: src[j]=w} a_j
// (pointer–generator; a = head 0 of the last decoder layer's cross-attention), its probability (the
// token's confidence), and the most-attended source position (for <unk> replacement), without
// writing a probability row. CPU twin: pick_one in src/one2set/decode.rs.
//
// grid: rows  block: 256 threads.
// 1. one pass over the row's f32 logits: max, its first index, Σ exp(logit - max), online;
// 2. p_gen = sigmoid(features · w + b);
// 3. the candidates: the vocabulary argmax (p_gen / Σ, plus copy mass if it is a source word) and
//    every distinct source word (a thread per first occurrence, summing its attention along the
//    host-built chain of later occurrences, in source order). Copy mass only raises source words,
//    so no other word can win. Ties go to the lower id, as torch.max returns the first maximum.
#include "common.cuh"

namespace {

constexpr int THREADS = 256;

// (max, first index, Σ exp(x - max)) merged as in online softmax.
struct Stats {
    float m;
    int idx;
    float s;
};

__device__ __forceinline__ Stats merge(Stats a, Stats b) {
    if (b.m > a.m || (b.m == a.m && b.idx < a.idx)) {
        const Stats t = a;
        a = b;
        b = t;
    }
    // a holds the maximum; b's sum rescales onto it (b.m = -inf contributes nothing).
    const float sb = b.s == 0.f ? 0.f : b.s * __expf(b.m - a.m);
    return Stats{a.m, a.idx, a.s + sb};
}

// (probability, id): larger probability wins, then the lower id.
__device__ __forceinline__ void better(float& p, int& id, float p2, int id2) {
    if (p2 > p || (p2 == p && id2 < id)) {
        p = p2;
        id = id2;
    }
}

}  // namespace

extern "C" __global__ void __launch_bounds__(THREADS) one2set_finish_f32(
    int* __restrict__ picks,              // [3, rows] token, attention argmax, probability bits
    const float* __restrict__ logits,     // [rows, vocab]
    const bf16* __restrict__ features,    // [rows, d] output_fc(LN(x)), bias included
    const float* __restrict__ p_gen_w,    // [d]
    const float* __restrict__ copy_attn,  // [rows, copy_stride] head-0 cross-attention
    const int* __restrict__ slots,        // [rows] document * num_codes + code
    const int* __restrict__ doc_start,    // [docs]
    const int* __restrict__ doc_len,      // [docs]
    const int* __restrict__ src_ext,      // [tokens] extended-vocabulary id of each source token
    const int* __restrict__ src_next,     // [tokens] next position (in the document) of the same id, -1
    const int* __restrict__ src_first,    // [tokens] 1 at a word's first occurrence in its document
    float p_gen_b, int rows, int vocab, int d, int copy_stride, int num_codes) {
    __shared__ float red_f[32];
    __shared__ int red_i[32];
    __shared__ float red_s[32];
    const int r = blockIdx.x;
    const int lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
    const int num_warps = THREADS / WARP_SIZE;

    // 1. Vocabulary statistics.
    const float* row = logits + (long long)r * vocab;
    Stats st{-INFINITY, 0x7fffffff, 0.f};
    for (int v = threadIdx.x; v < vocab; v += THREADS) {
        const float x = row[v];
        if (x > st.m) {
            st.s = st.s * __expf(st.m - x) + 1.f;
            st.m = x;
            st.idx = v;
        } else {
            st.s += __expf(x - st.m);
        }
    }
#pragma unroll
    for (int o = WARP_SIZE / 2; o > 0; o >>= 1) {
        const Stats other{__shfl_xor_sync(FULL_MASK, st.m, o), __shfl_xor_sync(FULL_MASK, st.idx, o),
                          __shfl_xor_sync(FULL_MASK, st.s, o)};
        st = merge(st, other);
    }
    if (lane == 0) {
        red_f[warp] = st.m;
        red_i[warp] = st.idx;
        red_s[warp] = st.s;
    }
    __syncthreads();
    if (warp == 0) {
        st = lane < num_warps ? Stats{red_f[lane], red_i[lane], red_s[lane]}
                              : Stats{-INFINITY, 0x7fffffff, 0.f};
#pragma unroll
        for (int o = WARP_SIZE / 2; o > 0; o >>= 1) {
            const Stats other{__shfl_xor_sync(FULL_MASK, st.m, o), __shfl_xor_sync(FULL_MASK, st.idx, o),
                              __shfl_xor_sync(FULL_MASK, st.s, o)};
            st = merge(st, other);
        }
    }
    __shared__ Stats total;
    if (threadIdx.x == 0) total = st;

    // 2. p_gen.
    float z = 0.f;
    for (int c = threadIdx.x; c < d; c += THREADS) z += to_float(features[(long long)r * d + c]) * p_gen_w[c];
    z = block_sum(z, red_f);  // its first __syncthreads also publishes `total`
    const float p_gen = 1.f / (1.f + __expf(-(z + p_gen_b)));
    const Stats vs = total;
    const float copy = 1.f - p_gen;

    // 3. Candidates, and the most-attended source position.
    const int doc = slots[r] / num_codes;
    const int start = doc_start[doc], len = doc_len[doc];
    const float* attn = copy_attn + (long long)r * copy_stride;
    float best_p = -1.f;
    int best_id = 0x7fffffff;
    float att_max = -INFINITY;
    int att_at = 0x7fffffff;
    if (threadIdx.x == 0) {
        best_p = p_gen / vs.s;
        best_id = vs.idx;
    }
    for (int j = threadIdx.x; j < len; j += THREADS) {
        const float a = attn[j];
        if (a > att_max) {  // strided j ascends, so the first maximum of this thread is kept
            att_max = a;
            att_at = j;
        }
        if (src_first[start + j]) {
            const int id = src_ext[start + j];
            float mass = 0.f;
            for (int k = j; k >= 0; k = src_next[start + k]) mass += attn[k];
            const float pv = id < vocab ? __expf(row[id] - vs.m) / vs.s : 0.f;
            better(best_p, best_id, p_gen * pv + copy * mass, id);
        }
    }
#pragma unroll
    for (int o = WARP_SIZE / 2; o > 0; o >>= 1) {
        better(best_p, best_id, __shfl_xor_sync(FULL_MASK, best_p, o), __shfl_xor_sync(FULL_MASK, best_id, o));
        const float am = __shfl_xor_sync(FULL_MASK, att_max, o);
        const int aa = __shfl_xor_sync(FULL_MASK, att_at, o);
        if (am > att_max || (am == att_max && aa < att_at)) {
            att_max = am;
            att_at = aa;
        }
    }
    __shared__ float cand_p[32], att_m[32];
    __shared__ int cand_id[32], att_i[32];
    __syncthreads();
    if (lane == 0) {
        cand_p[warp] = best_p;
        cand_id[warp] = best_id;
        att_m[warp] = att_max;
        att_i[warp] = att_at;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < num_warps; ++w) {
            better(best_p, best_id, cand_p[w], cand_id[w]);
            if (att_m[w] > att_max || (att_m[w] == att_max && att_i[w] < att_at)) {
                att_max = att_m[w];
                att_at = att_i[w];
            }
        }
        picks[r] = best_id;
        picks[rows + r] = att_at == 0x7fffffff ? 0 : att_at;
        picks[2 * rows + r] = __float_as_int(best_p);
    }
}
