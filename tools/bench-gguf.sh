#!/usr/bin/env bash
# kpg against llama.cpp on the same GGUF file, 2 threads, alternated in one run: prefill tokens/s
# (one prompt of 256 tokens) and decode tokens/s (128 single-token steps after the same 256-token
# prompt, as tools/peer_llamacpp.py does), both timed inside each process around the same work.
# A peer that fails fails the script. Extra arguments after the model go to every kpg command
# (e.g. --gguf-weights f32); RUNS sets the number of alternated runs (default 3).
#
#   tools/fetch-models.sh && cargo build --release
#   PY=~/venv-llama/bin/python tools/bench-gguf.sh [MODEL.gguf [KPG ARGS...]]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
PY=${PY:-python3}
KPG=target/release/kpg
export RAYON_NUM_THREADS=2
shift || true
ids=$(python3 -c "print(','.join(str(100 + i) for i in range(256)))")
for run in $(seq 1 "${RUNS:-3}"); do
    prefill=$("$KPG" "$@" bench prefill --model "$MODEL" --seqs 1 --tokens 256 --runs 5 |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)["tokens_per_s"], 1))')
    decode=$("$KPG" "$@" debug generate --model "$MODEL" --ids "$ids" --max-new-tokens 129 --ignore-eos |
        python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["decode_steps"] == 128, r["decode_steps"]; print(r["decode_tokens_per_s"])')
    printf 'run %s kpg: prefill %s tokens/s, decode %.1f tokens/s\n' "$run" "$prefill" "$decode"
    "$PY" tools/peer_llamacpp.py --model "$MODEL" --threads 2 --runs 1 |
        python3 -c 'import json,sys; r=json.load(sys.stdin); print("run '"$run"' llama.cpp %s: prefill %.1f tokens/s, decode %.1f tokens/s" % (r["version"], r["prefill_tokens_per_s"], r["decode_tokens_per_s"]))'
done
