// The selector's label head: for each wanted (token, vocabulary id) pair, the final RMSNorm of the
// token's residual row and its dot product with that one LM-head row, instead of a vocabulary-wide
// GEMM (a choice step needs two logits, not 32,000). CPU twin: Llama::restricted_head.
// grid: (num_out)  block: 256 threads; the norm is recomputed per output (two or three per token),
// which costs a reread of one hidden row from L2.
#include "common.cuh"

extern "C" __global__ void label_head_bf16(
    float* __restrict__ out,              // [num_out]
    const float* __restrict__ x,          // [num_tokens, dim] residual stream
    const uint32_t* __restrict__ rows,    // [num_out] token index of each output
    const uint32_t* __restrict__ ids,     // [num_out] vocabulary id of each output
    const float* __restrict__ norm_weight,// [dim]
    const bf16* __restrict__ lm_head,     // [vocab, dim]
    int dim, float eps) {
    __shared__ float shared[32];
    const float* xr = x + (long long)rows[blockIdx.x] * dim;
    const bf16* w = lm_head + (long long)ids[blockIdx.x] * dim;
    float sum_sq = 0.f, dot = 0.f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        const float v = xr[i];
        sum_sq += v * v;
        dot += norm_weight[i] * v * to_float(w[i]);
    }
    // rmsnorm(x)·w = inv · Σ norm_weight_i x_i w_i: the scale factors out of the sum.
    sum_sq = block_sum(sum_sq, shared);
    dot = block_sum(dot, shared);
    if (threadIdx.x == 0) out[blockIdx.x] = dot * rsqrtf(sum_sq / dim + eps);
}
