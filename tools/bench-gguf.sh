#!/usr/bin/env bash
# kpg against llama.cpp on the same GGUF file, 2 threads, alternated in one run: prefill tokens/s
# (one prompt of 256 tokens) and decode tokens/s (128 tokens after the same 256-token prompt, as
# tools/peer_llamacpp.py does). kpg's decode is the time of a 129-token greedy continuation minus
# that of a 1-token one (both load and prefill the same), over 128. A peer that fails fails the
# script. Extra arguments after the model go to every kpg command (e.g. --gguf-weights f32).
#
#   tools/fetch-models.sh && cargo build --release
#   PY=~/venv-llama/bin/python tools/bench-gguf.sh [MODEL.gguf]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
PY=${PY:-python3}
KPG=target/release/kpg
export RAYON_NUM_THREADS=2
shift || true
ids=$(python3 -c "print(','.join(str(100 + i) for i in range(256)))")
seconds() { # command... -> wall seconds
    local t0 t1
    t0=$(date +%s.%N)
    "$@" > /dev/null
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}
for run in $(seq 1 "${RUNS:-3}"); do
    prefill=$("$KPG" "$@" bench prefill --model "$MODEL" --seqs 1 --tokens 256 --runs 5 |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)["tokens_per_s"], 1))')
    one=$(seconds "$KPG" "$@" debug generate --model "$MODEL" --ids "$ids" --max-new-tokens 1 --ignore-eos)
    many=$(seconds "$KPG" "$@" debug generate --model "$MODEL" --ids "$ids" --max-new-tokens 129 --ignore-eos)
    decode=$(echo "128 / ($many - $one)" | bc -l)
    printf 'run %s kpg: prefill %s tokens/s, decode %.1f tokens/s\n' "$run" "$prefill" "$decode"
    "$PY" tools/peer_llamacpp.py --model "$MODEL" --threads 2 --runs 1 |
        python3 -c 'import json,sys; r=json.load(sys.stdin); print("run '"$run"' llama.cpp %s: prefill %.1f tokens/s, decode %.1f tokens/s" % (r["version"], r["prefill_tokens_per_s"], r["decode_tokens_per_s"]))'
done
