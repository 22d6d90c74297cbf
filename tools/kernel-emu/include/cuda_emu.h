// Runs CUDA kernels on the CPU, one cooperatively scheduled fiber per CUDA thread, so that a
// kernel's indexing, masking and warp/CTA synchronisation can be checked without a GPU. Included before
// the kernel source (g++ -include cuda_emu.h -x c++ kernels/foo.cu). CTAs run one after another,
// so `__shared__` variables become function statics. A shuffle or barrier reached by only part of
// a warp or CTA (divergent synchronisation, a real bug on the GPU too) is reported as a deadlock.
#pragma once
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
struct uint4 {
    unsigned x, y, z, w;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

// The running CUDA thread's indices: set by the scheduler before it resumes a thread.
inline dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace emu {
struct Barrier {
    int size = 0, arrived = 0;
    uint64_t generation = 0;
};
struct Fiber {
    ucontext_t ctx;
    std::vector<char> stack;
    dim3 tid;
    bool done = false;
};
struct Cta {
    std::vector<Fiber> fibers;
    Barrier all;
    std::vector<Barrier> warps;
    std::vector<uint64_t> slots;  // one per thread, for shuffles
    ucontext_t scheduler;
    int current = 0;
    uint64_t progress = 0;
    const std::function<void()>* kernel = nullptr;
};
inline Cta* cta = nullptr;

inline int flat_tid() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }

inline void yield() { swapcontext(&cta->fibers[cta->current].ctx, &cta->scheduler); }

// Waits until every member of `b` has arrived (the last one to arrive releases the others).
inline void arrive(Barrier& b) {
    const uint64_t gen = b.generation;
    ++cta->progress;
    if (++b.arrived == b.size) {
        b.arrived = 0;
        ++b.generation;
        return;
    }
    while (b.generation == gen) yield();
}

inline void fiber_main() {
    (*cta->kernel)();
    cta->fibers[cta->current].done = true;
    ++cta->progress;
    // Returning ends the fiber; uc_link brings control back to the scheduler.
}

template <class T>
T shfl(unsigned mask, T v, int src_lane) {
    if (mask != 0xffffffffu) std::abort();  // the kernels here only use full-warp shuffles
    const int tid = flat_tid(), warp = tid / 32;
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    cta->slots[tid] = bits;
    arrive(cta->warps[warp]);
    bits = cta->slots[warp * 32 + (src_lane & 31)];
    arrive(cta->warps[warp]);
    T r;
    std::memcpy(&r, &bits, sizeof(T));
    return r;
}

// Launches `kernel` (a closure calling the entry point) over the grid, CTA after CTA, the CTA's
// threads as cooperatively scheduled fibers on this OS thread.
inline void launch(dim3 grid, dim3 block, const std::function<void()>& kernel) {
    gridDim = grid;
    blockDim = block;
    const int n = block.x * block.y * block.z;
    if (n % 32 != 0) std::abort();
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                Cta c;
                c.kernel = &kernel;
                c.all.size = n;
                c.warps.assign(n / 32, Barrier{32, 0, 0});
                c.slots.assign(n, 0);
                c.fibers.resize(n);
                cta = &c;
                blockIdx = {bx, by, bz};
                for (int t = 0; t < n; ++t) {
                    Fiber& f = c.fibers[t];
                    f.tid = {(unsigned)(t % block.x), (unsigned)(t / block.x % block.y),
                             (unsigned)(t / (block.x * block.y))};
                    f.stack.resize(256 * 1024);
                    getcontext(&f.ctx);
                    f.ctx.uc_stack.ss_sp = f.stack.data();
                    f.ctx.uc_stack.ss_size = f.stack.size();
                    f.ctx.uc_link = &c.scheduler;
                    makecontext(&f.ctx, fiber_main, 0);
                }
                for (;;) {
                    const uint64_t before = c.progress;
                    bool alive = false;
                    for (int t = 0; t < n; ++t) {
                        if (c.fibers[t].done) continue;
                        alive = true;
                        c.current = t;
                        threadIdx = c.fibers[t].tid;
                        swapcontext(&c.scheduler, &c.fibers[t].ctx);
                    }
                    if (!alive) break;
                    if (c.progress == before) {
                        std::fprintf(stderr, "deadlock: CTA (%u,%u,%u) has threads waiting at a "
                                             "barrier or shuffle others never reach\n", bx, by, bz);
                        std::abort();
                    }
                }
                cta = nullptr;
            }
}
}  // namespace emu

inline void __syncthreads() { emu::arrive(emu::cta->all); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
    if (mask != 0xffffffffu) std::abort();  // the kernels here only sync whole warps
    emu::arrive(emu::cta->warps[emu::flat_tid() / 32]);
}
template <class T>
T __shfl_sync(unsigned mask, T v, int src) { return emu::shfl(mask, v, src); }
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int o) {
    const int lane = emu::flat_tid() % 32;
    return emu::shfl(mask, v, lane ^ o);
}
template <class T>
T __ldg(const T* p) { return *p; }
inline float __uint_as_float(unsigned u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
using std::max;
using std::min;

// ---- Vector types, fast-math intrinsics and dynamic shared memory (kernels/one2set_*.cu) ----
struct alignas(16) int4 {
    int x, y, z, w;
};
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
struct alignas(16) float4 {
    float x, y, z, w;
};
inline float __expf(float x) { return std::exp(x); }
inline int __float_as_int(float f) {
    int i;
    std::memcpy(&i, &f, 4);
    return i;
}

// `extern __shared__ T name[];` cannot follow `static`, so shared variables become block-scope
// `thread_local`s instead (implicitly static; the fibers share one OS thread, so one copy per
// CTA as before). A harness that runs a kernel with dynamic shared memory defines the array
// itself, in the kernel's namespace (an anonymous one included), before including the kernel:
//     namespace { EMU_DYNAMIC_SHARED(float, smem, 48 * 1024); }
// and launches with emu::launch(grid, block, bytes, &smem, sizeof smem, closure), which fills the
// first `bytes` with 0xff (NaN as f32) before each CTA and, under AddressSanitizer, poisons the
// rest, so a read of shared memory the CTA never wrote or past what the launch asked for fails.
#undef __shared__
#define __shared__ thread_local
#define __align__(n) __attribute__((aligned(n)))
#define EMU_DYNAMIC_SHARED(type, name, bytes) \
    __attribute__((aligned(16))) thread_local type name[(bytes) / sizeof(type)]
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif
namespace emu {
// g++ 12 calls the TU's `__tls_init` from an `extern thread_local` block-scope declaration but only
// emits it when some thread_local has a dynamic initialiser: this one.
static thread_local int tls_init_anchor = std::atoi("0");

inline void launch(dim3 grid, dim3 block, size_t bytes, void* shared, size_t capacity,
                   const std::function<void()>& kernel) {
    if (bytes > capacity) {
        std::fprintf(stderr, "launch asks for %zu bytes of dynamic shared memory; the harness has %zu\n",
                     bytes, capacity);
        std::abort();
    }
    char* base = static_cast<char*>(shared);
#if defined(__SANITIZE_ADDRESS__)
    ASAN_POISON_MEMORY_REGION(base + bytes, capacity - bytes);
#endif
    // Thread 0 of a CTA runs first, until its first barrier or shuffle, before any other starts.
    launch(grid, block, [&] {
        if (flat_tid() == 0) std::memset(base, 0xff, bytes);
        kernel();
    });
#if defined(__SANITIZE_ADDRESS__)
    ASAN_UNPOISON_MEMORY_REGION(base + bytes, capacity - bytes);
#endif
}
}  // namespace emu
