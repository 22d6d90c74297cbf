#!/usr/bin/env bash
# Builds and runs the CPU emulation of kernels/paged_attention.cu (no GPU needed), under
# AddressSanitizer so that any out-of-bounds read or write of the kernels fails. Usage:
#   tools/kernel-emu/run.sh [case-name-filter]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${TMPDIR:-/tmp}/kpg-paged-attention-emu"
g++ -std=c++20 -O1 -g -fsanitize=address,undefined -I"$here/include" -I"$here/../../kernels" -x c++ \
    "$here/paged_attention_test.cpp" -o "$bin"
ASAN_OPTIONS=detect_leaks=0 timeout 1800 "$bin" "$@" 2> >(grep -v "fully support makecontext" >&2)
