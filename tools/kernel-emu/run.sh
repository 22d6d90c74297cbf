#!/usr/bin/env bash
# Builds and runs the CPU emulation of kernels/paged_attention.cu (no GPU needed). Usage:
#   tools/kernel-emu/run.sh [case-name-filter]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${TMPDIR:-/tmp}/kpg-paged-attention-emu"
g++ -std=c++20 -O2 -I"$here/include" -I"$here/../../kernels" -x c++ \
    "$here/paged_attention_test.cpp" -o "$bin"
timeout 900 "$bin" "$@"
