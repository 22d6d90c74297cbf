// Row-wise pieces of the One2Set Transformer around its cuBLAS GEMMs (src/one2set/cuda_model.rs):
// embeddings with sinusoid positions, LayerNorm, bias (+ReLU), bias + residual, and the decoder's
// input sum. The residual stream `x` stays in f32 (it is summed into 12+ times per token, and bf16
// would drift past the selftest tolerance); GEMM inputs and outputs are bf16.
//
// grid: rows  block: 128 threads, a block per row, threads striding over the row (a block per row
// rather than a flat index, so that no thread divides a 64-bit index to find its column).
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

// y[r] += bias, then ReLU when `relu` is set; in place on a GEMM output.
extern "C" __global__ void one2set_bias_bf16(
    bf16* __restrict__ y,           // [rows, n]
    const float* __restrict__ bias, // [n]
    int n, int relu) {
    bf16* row = y + (long long)blockIdx.x * n;
    for (int c = threadIdx.x; c < n; c += blockDim.x) {
        float v = to_float(row[c]) + bias[c];
        if (relu) v = fmaxf(v, 0.f);
        row[c] = to_bf16(v);
    }
}

// x[r] = (accumulate ? x[r] : 0) + y[r] + bias: a sub-block's output projection joins the
// residual stream (accumulate = 1), or input_fc starts it (accumulate = 0).
extern "C" __global__ void one2set_residual_bf16(
    float* __restrict__ x,          // [rows, d]
    const bf16* __restrict__ y,     // [rows, d]
    const float* __restrict__ bias, // [d]
    int d, int accumulate) {
    const long long at = (long long)blockIdx.x * d;
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
        const float base = accumulate ? x[at + c] : 0.f;
        x[at + c] = base + to_float(y[at + c]) + bias[c];
    }
}

// The decoder's input at step t: x[r] = input_fc(...)[r] + bias + pos_table[t] + codes[slot % N].
extern "C" __global__ void one2set_decoder_input_bf16(
    float* __restrict__ x,              // [rows, d]
    const bf16* __restrict__ y,         // [rows, d] input_fc without its bias
    const float* __restrict__ bias,     // [d]
    const float* __restrict__ pos_row,  // [d] position `step`
    const float* __restrict__ codes,    // [num_codes, d] control codes
    const int* __restrict__ slots,      // [rows] document * num_codes + code
    int d, int num_codes) {
    const long long at = (long long)blockIdx.x * d;
    const float* code = codes + (long long)(slots[blockIdx.x] % num_codes) * d;
    for (int c = threadIdx.x; c < d; c += blockDim.x)
        x[at + c] = to_float(y[at + c]) + bias[c] + pos_row[c] + code[c];
}
