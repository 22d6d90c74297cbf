// Stand-ins for the CUDA built-ins that kernels/sinkhorn.cu uses, so that it compiles as host
// C++: threadIdx per std::thread, a std::barrier for __syncthreads, one shared-memory array per
// block (blocks run one after another), the _rn intrinsics as plain roundings.
#include <barrier>
#include <cmath>
#include <cstdio>
#include <thread>
#include <vector>
#include <algorithm>
#include <memory>
struct Dim { unsigned x, y, z; };
thread_local Dim threadIdx;
Dim blockIdx, blockDim;
static std::unique_ptr<std::barrier<>> g_bar;
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
#define __align__(n)
#define __shared__
inline void __syncthreads() { g_bar->arrive_and_wait(); }
inline double __dmul_rn(double a, double b) { volatile double r = a * b; return r; }
inline double __dadd_rn(double a, double b) { volatile double r = a + b; return r; }
inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
inline float __fsub_rn(float a, float b) { volatile float r = a - b; return r; }
using std::min;
alignas(16) unsigned char smem_raw[1 << 22];
