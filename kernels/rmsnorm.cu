// RMSNorm as transformers' LlamaRMSNorm: out = x · rsqrt(mean(x²) + eps) · weight. The residual
// stream x stays f32 on the GPU (bf16 sums drift past the 1e-2 tolerance over 32 layers); the
// normed output is bf16, the input of the next GEMM.
// grid: (num_rows)  block: 256 threads, a strided loop over the row.
#include "common.cuh"

__device__ __forceinline__ void rmsnorm_row(
    bf16* __restrict__ out,          // [dim]
    const float* __restrict__ x,     // [dim]
    const float* __restrict__ weight,// [dim]
    float sum_sq, int dim, float eps, float* shared) {
    sum_sq = block_sum(sum_sq, shared);
    const float inv = rsqrtf(sum_sq / dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) out[i] = to_bf16(weight[i] * (x[i] * inv));
}

extern "C" __global__ void rmsnorm_f32_bf16(
    bf16* __restrict__ out,           // [num_rows, dim]
    const float* __restrict__ x,      // [num_rows, dim]
    const float* __restrict__ weight, // [dim]
    int dim, float eps) {
    __shared__ float shared[32];
    const long long row = blockIdx.x;
    x += row * dim;
    out += row * dim;
    float s = 0.f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) s += x[i] * x[i];
    rmsnorm_row(out, x, weight, s, dim, eps, shared);
}

// x += delta, then out = rmsnorm(x): the attention residual and the MLP's input norm in one pass.
extern "C" __global__ void residual_rmsnorm_f32_bf16(
    bf16* __restrict__ out,           // [num_rows, dim]
    float* __restrict__ x,            // [num_rows, dim], updated in place
    const bf16* __restrict__ delta,   // [num_rows, dim]
    const float* __restrict__ weight, // [dim]
    int dim, float eps) {
    __shared__ float shared[32];
    const long long row = blockIdx.x;
    x += row * dim;
    out += row * dim;
    delta += row * dim;
    float s = 0.f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        const float v = x[i] + to_float(delta[i]);
        x[i] = v;
        s += v * v;
    }
    // Each thread rereads only the elements it wrote, so no barrier is needed before the reread
    // (block_sum's barriers are for its own shared memory).
    rmsnorm_row(out, x, weight, s, dim, eps, shared);
}
