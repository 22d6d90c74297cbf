// Host buffers aligned as device allocations are (256 bytes on a GPU; 64 here is enough for the
// kernels' int4 and float4 loads), for the emulation harnesses.
#pragma once
#include <cstddef>
#include <new>
#include <vector>

template <class T>
struct Aligned {
    using value_type = T;
    Aligned() = default;
    template <class U>
    Aligned(const Aligned<U>&) {}
    T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
    void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
    template <class U>
    bool operator==(const Aligned<U>&) const { return true; }
};
template <class T>
using Vec = std::vector<T, Aligned<T>>;
