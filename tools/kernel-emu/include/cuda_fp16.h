// Host stand-in for CUDA's f16 header (the emulated kernels do not use f16).
#pragma once
struct __half {
    unsigned short bits;
};
float __half2float(__half);
