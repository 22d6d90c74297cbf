// Element-wise pieces of the LLaMA block: SwiGLU and the residual add.
// grid: ceil(n / 256)  block: 256 threads, one element a thread.
#include "common.cuh"

// out = silu(gate) · up, where the fused gate/up GEMM wrote each row as [gate | up].
extern "C" __global__ void silu_mul_bf16(
    bf16* __restrict__ out,            // [num_rows, inter]
    const bf16* __restrict__ gate_up,  // [num_rows, 2 * inter]
    int num_rows, int inter) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)num_rows * inter) return;
    const long long row = i / inter, col = i % inter;
    const float g = to_float(gate_up[row * 2 * inter + col]);
    const float u = to_float(gate_up[row * 2 * inter + inter + col]);
    out[i] = to_bf16(g / (1.f + expf(-g)) * u);
}

// x += delta: the f32 residual stream takes a bf16 block output.
extern "C" __global__ void residual_add_f32_bf16(
    float* __restrict__ x,            // [n]
    const bf16* __restrict__ delta,   // [n]
    long long n) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += to_float(delta[i]);
}
