#!/usr/bin/env bash
# Every GPU check of kpg in one run, on a machine with a GPU and no Rust toolchain:
#
#   cargo build --release --features cuda          # on the development machine
#   tools/gpu-check.sh RESULTS_DIR [KPG_BINARY]     # on the GPU machine, from the repo root
#
# 1. what the machine is and which CUDA libraries the binary will load;
# 2. `kpg selftest --device cuda`: every kernel against its CPU twin, whole models against the CPU,
#    the LLaMA logits against the transformers fixtures in tests/fixtures/llama;
# 3. the ceilings (device-to-device copy GB/s, bf16 cuBLAS GEMM TFLOP/s);
# 4. the selector on the llama2-7b synth preset against the batched transformers peer
#    (tools/peer_select_gpu.py: bf16, SDPA), and prefill TFLOP/s as a share of the GEMM ceiling;
# 5. every fragment in tools/gpu-check.d/ (decode attention, Sinkhorn OT, One2Set decoding).
#
# Full outputs go to RESULTS_DIR; a short table (RESULTS_DIR/summary.txt) is printed at the end.
# PY (default: python3) must have torch and transformers. A failing step is recorded and the
# rest still run; the exit status is 1 if any step failed. PARTS (default: "selftest ceilings
# selector attention ot generate") picks parts, to split the run across a device's time limits;
# the ceilings are measured whenever a benchmark part runs, since shares are taken against them.
# STEP_TIMEOUT (seconds, default 600) bounds every step, so that one hang cannot eat a device's
# whole time limit; a step stopped by it is recorded as failed ("timed out").
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${1:?usage: tools/gpu-check.sh RESULTS_DIR [KPG_BINARY]}
KPG=$(realpath "${2:-target/release/kpg}")
PY=${PY:-python3}
WORK=${WORK:-local/gpu-check}
mkdir -p "$OUT" "$WORK"
OUT=$(realpath "$OUT")
PARTS=${PARTS:-selftest ceilings selector attention ot generate}
want() { [[ " $PARTS " == *" $1 "* ]]; }
export OUT KPG PY WORK
: > "$OUT/summary.txt"
failed=0

step() { # step NAME COMMAND...: runs COMMAND, its output to $OUT/NAME.log, records failure
    local name=$1
    shift
    echo "== $name" >&2
    local t0=$SECONDS status=0
    if [ "$(type -t "$1")" = function ]; then # timeout runs programs: a function goes with its text
        set -- bash -c "$(declare -f "$1"); $(printf '%q ' "$@")"
    fi
    timeout --kill-after=10 "${STEP_TIMEOUT:-600}" "$@" > "$OUT/$name.log" 2>&1 || status=$?
    if [ $status -eq 0 ]; then
        echo "$name: ok ($((SECONDS - t0)) s)" >&2
    else
        local why="exit $status"
        if [ $status -eq 124 ] || [ $status -eq 137 ]; then why="timed out after ${STEP_TIMEOUT:-600} s"; fi
        echo "$name: FAILED ($why, $((SECONDS - t0)) s; see $OUT/$name.log)" >&2
        echo "$name: FAILED ($why; see $name.log)" >> "$OUT/summary.txt"
        failed=1
    fi
}

json_field() { # json_field FILE KEY: a top-level field of the last JSON line of FILE
    "$PY" -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])[sys.argv[2]])' "$1" "$2"
}

environment() {
    nvidia-smi
    echo "--- libraries"
    ldconfig -p | grep -E 'libcuda|cublas|nvrtc'
    echo "--- kpg"
    "$KPG" --version
    ldd "$KPG"
    "$PY" -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)'
}
step environment environment

if want selftest; then
    step selftest "$KPG" selftest --device cuda
    export SELFTEST_DONE=1
    grep -E '^[0-9]+ checks' "$OUT/selftest.log" | sed 's/^/selftest: /' >> "$OUT/summary.txt"
    grep -E ' (FAIL|SKIPPED)' "$OUT/selftest.log" | sed 's/^/selftest: /' >> "$OUT/summary.txt" || true
fi

if [[ "$PARTS" != selftest ]]; then
    step ceilings "$KPG" bench ceilings
fi
if [ -s "$OUT/ceilings.log" ] && grep -q copy_gb_per_s "$OUT/ceilings.log"; then
    tail -n 1 "$OUT/ceilings.log" > "$OUT/ceilings.json"
    COPY_GBS=$(json_field "$OUT/ceilings.json" copy_gb_per_s)
    GEMM_TFLOPS=$(json_field "$OUT/ceilings.json" gemm_bf16_tflops)
    export COPY_GBS GEMM_TFLOPS
    printf 'ceilings: copy %.0f GB/s, bf16 GEMM %.0f TFLOP/s\n' "$COPY_GBS" "$GEMM_TFLOPS" >> "$OUT/summary.txt"
fi

# The selector: llama2-7b shapes, random bf16 weights, 20 candidates per document.
selector() {
    LLAMA=$WORK/llama2-7b
    [ -f "$LLAMA/config.json" ] || step synth-llama2-7b "$KPG" synth --arch llama --preset llama2-7b --dtype bf16 --out "$LLAMA"
    step select-kpg "$KPG" bench select --device cuda --selector "$LLAMA" --docs 256 --candidates 20 \
        --max-batch-tokens 16384 --dump "$WORK/programs.json"
    step select-peer "$PY" tools/peer_select_gpu.py --selector "$LLAMA" --programs "$WORK/programs.json" --batch 64
    if grep -q '"documents_per_s"' "$OUT/select-kpg.log" && grep -q '"documents_per_s"' "$OUT/select-peer.log"; then
        k=$(json_field "$OUT/select-kpg.log" documents_per_s)
        p=$(json_field "$OUT/select-peer.log" documents_per_s)
        agree=$(json_field "$OUT/select-peer.log" decisions_agreeing_with_kpg)
        total=$(json_field "$OUT/select-peer.log" decisions)
        "$PY" -c "import sys; k,p=float(sys.argv[1]),float(sys.argv[2]); print(f'select llama2-7b x20: kpg {k:.1f} docs/s, transformers {p:.1f}, {k/p:.2f}x (bar 3x); decisions agreeing {sys.argv[3]}/{sys.argv[4]}')" "$k" "$p" "$agree" "$total" >> "$OUT/summary.txt"
    fi
    step prefill "$KPG" bench prefill --device cuda --model "$LLAMA" --seqs 16 --tokens 512
    if grep -q '"tflops"' "$OUT/prefill.log" && [ -n "${GEMM_TFLOPS:-}" ]; then
        t=$(json_field "$OUT/prefill.log" tflops)
        "$PY" -c "import sys; t,c=float(sys.argv[1]),float(sys.argv[2]); print(f'prefill llama2-7b 16x512: {t:.0f} TFLOP/s, {100*t/c:.0f}% of the GEMM ceiling (bar 60%)')" "$t" "$GEMM_TFLOPS" >> "$OUT/summary.txt"
    fi
}
if want selector; then selector; fi

for fragment in tools/gpu-check.d/*.sh; do
    [ -e "$fragment" ] || continue
    name=$(basename "$fragment" .sh)
    want "$name" || continue
    step "fragment-$name" bash -c "set -euo pipefail; source '$fragment'"
done

echo
echo "== summary ($OUT/summary.txt)"
cat "$OUT/summary.txt"
exit $failed
