#!/usr/bin/env bash
# Checks kernels/sinkhorn.cu without a GPU: compiles the kernel file as host C++ (prelude.h stands
# in for CUDA: one std::thread per CUDA thread, a barrier for __syncthreads) and holds it to
# `kpg debug ot` on the CPU: the reference fixtures, random problems of every size up to 130 slots,
# and the gather from decoder distributions. It checks the kernel's logic (indexing, the roles,
# the barriers, the supply fix-up, the order of operations), not the GPU's exp/log/pow or timing.
#
#     tools/sinkhorn_emu/run.sh [path/to/kpg]   (default: target/release/kpg)
set -euo pipefail
cd "$(dirname "$0")/../.."
KPG=${1:-target/release/kpg}
PY=${PY:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
{
    cat tools/sinkhorn_emu/prelude.h
    sed -e 's/#include "common.cuh"//' \
        -e 's/extern __shared__ __align__(16) unsigned char smem_raw\[\];//' \
        -e 's/extern "C" //' kernels/sinkhorn.cu
    cat tools/sinkhorn_emu/main.cpp
} >"$work/emu.cpp"
g++ -std=c++20 -O1 -ffp-contract=off -include cstring -o "$work/emu" "$work/emu.cpp" -lpthread
"$PY" - "$work/sizes.json" <<'PYEOF'
import json, random, sys
random.seed(5)
def rp(real, s):
    has_null = real < s
    t = real + has_null
    sc = [[0.2 * random.random() ** 4 for _ in range(s)] for _ in range(t)]
    for j in range(s):
        if random.random() < 0.5:
            sc[random.randrange(t)][j] += 0.6 + 0.7 * random.random()
    return {"score": sc, "has_null": has_null}
ps = []
for _ in range(150):
    s = 1 + random.randrange(70)
    ps.append(rp(random.randint(0, s), s))
ps += [rp(0, 1), rp(1, 1), rp(64, 64), rp(63, 64), rp(40, 130)]
ps.append({"score": [[0.0] * 10] * 3, "has_null": True})
ps.append({"score": [[0.5] * 4] * 4, "has_null": False})
json.dump({"problems": ps}, open(sys.argv[1], "w"))
PYEOF
status=0
for f in tests/fixtures/ot/problems.json tests/fixtures/ot/problems_params.json "$work/sizes.json"; do
    "$PY" tools/sinkhorn_emu/check.py "$work/emu" "$KPG" "$f" || status=1
done
"$PY" tools/sinkhorn_emu/gather.py "$work/emu" "$KPG" "$work/gather.json" || status=1
exit $status
