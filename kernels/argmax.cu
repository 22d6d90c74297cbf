// Greedy decoding's argmax over each row of logits; ties go to the lowest index, as the CPU's
// first-maximum scan does.
// grid: (num_rows)  block: 256 threads.
#include "common.cuh"

extern "C" __global__ void argmax_f32(
    uint32_t* __restrict__ out,       // [num_rows]
    const float* __restrict__ logits, // [num_rows, n]
    int n) {
    __shared__ float best_val[256];
    __shared__ int best_idx[256];
    const float* row = logits + (long long)blockIdx.x * n;
    float v = -INFINITY;
    int idx = n;  // an all-NaN row answers n, out of range, so it cannot pass for a token
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        if (row[i] > v) {  // strictly greater: the first maximum in this thread's stride wins
            v = row[i];
            idx = i;
        }
    }
    best_val[threadIdx.x] = v;
    best_idx[threadIdx.x] = idx;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) {
            const float ov = best_val[threadIdx.x + stride];
            const int oi = best_idx[threadIdx.x + stride];
            if (ov > best_val[threadIdx.x] || (ov == best_val[threadIdx.x] && oi < best_idx[threadIdx.x])) {
                best_val[threadIdx.x] = ov;
                best_idx[threadIdx.x] = oi;
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = (uint32_t)best_idx[0];
}
