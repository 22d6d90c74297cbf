#!/usr/bin/env bash
# Builds and runs the CPU emulations of the kernels (no GPU needed), under AddressSanitizer so
# that any out-of-bounds read or write of a kernel fails: the LLaMA block's small kernels
# (llama_ops_test.cpp, seconds), the One2Set kernels (one2set_test.cpp, under a minute), the WMMA
# encoder attention on the wmma stand-in of include/mma.h (encoder_attention_test.cpp, under a
# minute), then kernels/paged_attention.cu (paged_attention_test.cpp, minutes). Usage:
#   tools/kernel-emu/run.sh [paged-attention-case-filter]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
for test in llama_ops one2set encoder_attention paged_attention; do
    bin="${TMPDIR:-/tmp}/kpg-$test-emu"
    g++ -std=c++20 -O1 -g -fsanitize=address,undefined -I"$here/include" -I"$here/../../kernels" -x c++ \
        "$here/${test}_test.cpp" -o "$bin"
    args=()
    [ "$test" = paged_attention ] && args=("$@")
    ASAN_OPTIONS=detect_leaks=0 timeout 1800 "$bin" "${args[@]}" 2> >(grep -v "fully support makecontext" >&2)
done
