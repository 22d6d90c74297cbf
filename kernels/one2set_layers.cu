// Row-wise pieces of the One2Set Transformer around its cuBLAS GEMMs (src/one2set/cuda_model.rs):
// embeddings with sinusoid positions, LayerNorm, bias (+ReLU), bias + residual, and the decoder's
// input sum. The residual stream `x` stays in f32 (it is summed into 12+ times per token, and bf16
// would drift past the selftest tolerance); GEMM inputs and outputs are bf16.
//
// Row kernels: grid: rows  block: 128 threads, a block per row, threads striding over the row.
// Element-wise kernels: grid: ceil(n / 256)  block: 256 threads, one element a thread.
#include "common.cuh"

// out[r] = bf16(scale * embed[ids[r]] + pos_table[positions[r]]); positions[r] < 0 adds nothing
// (the decoder adds its position after input_fc, the encoder before it).
extern "C" __global__ void one2set_embed_bf16(
    bf16* __restrict__ out,               // [rows, d]
    const int* __restrict__ ids,          // [rows]
    const int* __restrict__ positions,    // [rows] row of pos_table, or -1
    const bf16* __restrict__ embed,       // [vocab, d]
    const float* __restrict__ pos_table,  // [max_pos, d]
    float scale, int d) {
    const long long r = blockIdx.x;
    const bf16* e = embed + (long long)ids[r] * d;
    const int p = positions[r];
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
        float v = scale * to_float(e[c]);
        if (p >= 0) v += pos_table[(long long)p * d + c];
        out[r * d + c] = to_bf16(v);
    }
}

// out[r] = (x[r] - mean) / sqrt(var + eps) * weight + bias, PyTorch's biased variance. Two passes
// over the row (mean, then centred squares) in f32: the one-pass E[x²] - E[x]² form cancels badly
// on a residual stream whose mean is large against its spread.
extern "C" __global__ void one2set_layernorm_bf16(
    bf16* __restrict__ out,           // [rows, d]
    const float* __restrict__ x,      // [rows, d]
    const float* __restrict__ weight, // [d]
    const float* __restrict__ bias,   // [d]
    int d, float eps) {
    __shared__ float shared[32];
    const float* xr = x + (long long)blockIdx.x * d;
    float s = 0.f;
    for (int c = threadIdx.x; c < d; c += blockDim.x) s += xr[c];
    const float mean = block_sum(s, shared) / d;
    float v = 0.f;
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
        const float t = xr[c] - mean;
        v += t * t;
    }
    const float inv = rsqrtf(block_sum(v, shared) / d + eps);
    bf16* o = out + (long long)blockIdx.x * d;
    for (int c = threadIdx.x; c < d; c += blockDim.x)
        o[c] = to_bf16((xr[c] - mean) * inv * weight[c] + bias[c]);
}

// y[i] += bias[i % n], then ReLU when `relu` is set; in place on a GEMM output.
extern "C" __global__ void one2set_bias_bf16(
    bf16* __restrict__ y,           // [rows, n]
    const float* __restrict__ bias, // [n]
    long long total, int n, int relu) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    float v = to_float(y[i]) + bias[i % n];
    if (relu) v = fmaxf(v, 0.f);
    y[i] = to_bf16(v);
}

// x[i] = (accumulate ? x[i] : 0) + y[i] + bias[i % d]: a sub-block's output projection joins the
// residual stream (accumulate = 1), or input_fc starts it (accumulate = 0).
extern "C" __global__ void one2set_residual_bf16(
    float* __restrict__ x,          // [rows, d]
    const bf16* __restrict__ y,     // [rows, d]
    const float* __restrict__ bias, // [d]
    long long total, int d, int accumulate) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const float base = accumulate ? x[i] : 0.f;
    x[i] = base + to_float(y[i]) + bias[i % d];
}

// The decoder's input at step t: x[r] = input_fc(...)[r] + bias + pos_table[t] + codes[slot % N].
extern "C" __global__ void one2set_decoder_input_bf16(
    float* __restrict__ x,              // [rows, d]
    const bf16* __restrict__ y,         // [rows, d] input_fc without its bias
    const float* __restrict__ bias,     // [d]
    const float* __restrict__ pos_row,  // [d] position `step`
    const float* __restrict__ codes,    // [num_codes, d] control codes
    const int* __restrict__ slots,      // [rows] document * num_codes + code
    long long total, int d, int num_codes) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const long long r = i / d;
    const int c = (int)(i % d);
    const int code = slots[r] % num_codes;
    x[i] = to_float(y[i]) + bias[c] + pos_row[c] + codes[(long long)code * d + c];
}
