#!/usr/bin/env bash
# Installs the pinned CUDA 13.0 compiler from PyPI into local/cuda (ignored by git), so that
# `cargo build --features cuda` can compile kernels/*.cu on a machine without a CUDA toolkit or GPU.
# Unpinned, pip pulls a newer nvvm whose PTX the 13.0 ptxas rejects (../shared/GPU.md).
#
#   tools/install-nvcc.sh && NVCC=$PWD/local/cuda/bin/nvcc cargo build --release --features cuda
set -euo pipefail
cd "$(dirname "$0")/.."

venv=local/nvcc-venv
if [ ! -x "$venv/bin/pip" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet \
    nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ln -sfn "$site/nvidia/cu13" local/cuda  # purelib is absolute
local/cuda/bin/nvcc --version | tail -n 2
echo "nvcc: $PWD/local/cuda/bin/nvcc"
