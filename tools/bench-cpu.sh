#!/usr/bin/env bash
# CPU benchmarks of kpg and their transformers peers, run back to back on the same machine, for
# docs/PERF.md. Needs a Python with the packages of tools/requirements-peers.txt (PYTHON, default
# python3).
#
#   PYTHON=~/venv-kpg/bin/python tools/bench-cpu.sh [OUT_DIR]
#   SECTIONS="select ot train" tools/bench-cpu.sh      # some sections only
#
# Sections: forward, select, generate, ot, train (default: all). Each compares kpg with the
# strongest peer a user would pick (batched, its fastest attention, its threads); where an older,
# weaker peer is kept, its row is labelled as such. Prints one JSON line per measurement and
# writes them to OUT_DIR/results.jsonl (default target/bench-cpu). Run it on an otherwise idle
# machine: both sides use every core. Data (the generator and training sections) comes from
# KPG_DATA (default ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/bench-cpu}
py=${PYTHON:-python3}
mkdir -p "$out"
results="$out/results.jsonl"
: > "$results"
log() { echo "$1" | tee -a "$results"; }
# run NAME COMMAND...: the command's JSON line, logged; its stderr kept in $out/NAME.err. A command
# that fails stops the script with its stderr's tail (a `log "$(peer)"` would hide the failure:
# errexit does not see inside a command substitution that is an argument).
run() {
    local name=$1 line
    shift
    if ! line=$("$@" 2>"$out/$name.err"); then
        echo "bench-cpu: $name FAILED: $*" >&2
        tail -n 20 "$out/$name.err" >&2
        exit 1
    fi
    log "$line"
}

sections=" ${SECTIONS:-forward select generate ot train} "
want() { [[ $sections == *" $1 "* ]]; }
data_dir=${KPG_DATA:-../shared/data}

cargo build --release --quiet
kpg=target/release/kpg
models=target/bench-models
[ -f "$models/small-f32/config.json" ] || "$kpg" synth --arch llama --preset small --dtype f32 --out "$models/small-f32"
[ -f "$models/tiny-f32/config.json" ] || "$kpg" synth --arch llama --preset tiny --dtype f32 --out "$models/tiny-f32"

if want forward; then
  echo "== LLaMA forward, small preset, f32 (criterion; see target/criterion for details)" >&2
  cargo bench --quiet -p kpg-extras --bench cpu_forward -- --noplot 2>"$out/cpu_forward.err" | grep -E '^cpu_forward|time:|thrpt:' | tee "$out/cpu_forward.txt" >&2
  run peer_cpu_forward "$py" tools/peer_cpu_forward.py --model "$models/small-f32" --repeats 10
fi

if want select; then
  echo "== Selector, tiny preset" >&2
  run kpg_select_1 "$kpg" bench select --selector "$models/tiny-f32" --docs 64 --candidates 10 --dump "$out/programs.json"
  # The strongest peer: transformers generate, documents batched, SDPA, f32 (the CPU has no bf16
  # GEMM). Batch 16 is its fastest here (2026-12-04, 2 cores: 8: 52, 16: 63, 32: 59, 64: 43 docs/s).
  run peer_select_batched "$py" tools/peer_select_gpu.py --device cpu --dtype float32 --batch 16 --selector "$models/tiny-f32" --programs "$out/programs.json"
  # The weaker peer, kept as a labelled extra row: generate one document at a time.
  run peer_select_per_document "$py" tools/peer_select.py --selector "$models/tiny-f32" --programs "$out/programs.json"
  run kpg_select_2 "$kpg" bench select --selector "$models/tiny-f32" --docs 64 --candidates 10
fi

if want generate; then
  echo "== One2Set generator, tiny and base presets, KP20k test documents (first 256 / 64)" >&2
  data=$data_dir/kp20k.test.first1000.one2set.jsonl.gz
  # preset:documents:the strongest peer's fastest batch on 2 cores (2026-12-04 sweeps: tiny 16: 243,
  # 32: 248, 64: 245, 256: 174 docs/s; base 4: 4.72, 8: 4.96, 16: 4.74, 32: 4.07, 64: 3.31).
  for preset in tiny:256:32 base:64:8; do
    IFS=: read -r name docs batch <<<"$preset"
    [ -f "$models/one2set-$name/config.json" ] || "$kpg" synth --arch one2set --preset "$name" --out "$models/one2set-$name"
    run "kpg_generate_$name" "$kpg" bench generate --generator "$models/one2set-$name" --input "$data" --docs "$docs" --dump "$out/generate-$name.jsonl"
    # The strongest peer: the reference generator batched over documents and slots, SDPA, caches
    # preallocated, stopped when every slot is done; f32 on the CPU. It checks kpg's candidates.
    run "peer_generate_batched_$name" "$py" tools/peer_generate_gpu.py --device cpu --dtype float32 --batch-docs "$batch" --generator "$models/one2set-$name" --dump "$out/generate-$name.jsonl" --check
    # The weaker peer, kept as a labelled extra row: the same model, a slot loop per step.
    run "peer_generate_reference_$name" "$py" tools/peer_generate.py --generator "$models/one2set-$name" --dump "$out/generate-$name.jsonl"
  done
fi

if want ot; then
  echo "== Training's OT target assignment, 4,096 problems of up to 11 x 10" >&2
  run kpg_ot "$kpg" bench ot --problems 4096 --targets 11 --slots 10 --repeats 5 --dump "$out/ot.json"
  # The strongest peer: every problem in one batched log-domain Sinkhorn in torch, f64 as kpg.
  run peer_ot_torch "$py" tools/peer_ot_torch.py --problems "$out/ot.json" --device cpu --dtype float64 --repeats 5
  # The authors' way, kept as a labelled extra row: one NumPy Sinkhorn per problem.
  run peer_ot_numpy "$py" tools/peer_ot.py --problems "$out/ot.json"
fi

if want train; then
  echo "== Generator training step, the default generator's configuration, one thread each" >&2
  cfg=(--preset small --d-model 128 --heads 4 --ffn-dim 512 --layers 2 --vocab-size 10000)
  run kpg_train env RAYON_NUM_THREADS=1 "$kpg" bench train --data "$data_dir/acmcr.train.jsonl.gz" "${cfg[@]}" --steps 10 --dropout 0 --assign ot --dump "$out/train-batches.jsonl"
  run peer_train "$py" tools/peer_train.py --batches "$out/train-batches.jsonl" --threads 1
fi
