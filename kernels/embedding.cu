// Token embedding gather: rows of the bf16 table into the f32 residual stream. Ids were checked
// against the vocabulary on the host.
// grid: (num_tokens)  block: 256 threads, a strided loop over the row.
#include "common.cuh"

extern "C" __global__ void embedding_bf16(
    float* __restrict__ out,           // [num_tokens, dim]
    const uint32_t* __restrict__ ids,  // [num_tokens]
    const bf16* __restrict__ table,    // [vocab, dim]
    int dim) {
    const long long t = blockIdx.x;
    const bf16* row = table + (long long)ids[t] * dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) out[t * dim + i] = to_float(row[i]);
}
