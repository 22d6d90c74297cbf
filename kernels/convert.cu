// Dtype conversions between f32 and bf16 storage, element-wise.
// grid: ceil(n / 256)  block: 256 threads, one element a thread.
#include "common.cuh"

extern "C" __global__ void f32_to_bf16(
    bf16* __restrict__ out,       // [n]
    const float* __restrict__ x,  // [n]
    long long n) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = to_bf16(x[i]);
}

extern "C" __global__ void bf16_to_f32(
    float* __restrict__ out,     // [n]
    const bf16* __restrict__ x,  // [n]
    long long n) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = to_float(x[i]);
}

// f16 checkpoints are widened on the GPU, so that weights travel from the memory map unconverted.
extern "C" __global__ void f16_to_bf16(
    bf16* __restrict__ out,          // [n]
    const __half* __restrict__ x,    // [n]
    long long n) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = to_bf16(__half2float(x[i]));
}
