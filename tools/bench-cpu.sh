#!/usr/bin/env bash
# CPU benchmarks of kpg and their transformers peers, run back to back on the same machine, for
# docs/PERF.md. Needs a Python with torch and transformers (PYTHON, default python3).
#
#   PYTHON=~/venv-kpg/bin/python tools/bench-cpu.sh [OUT_DIR]
#
# Prints one JSON line per measurement and writes them to OUT_DIR/results.jsonl (default
# target/bench-cpu). Run it on an otherwise idle machine: both sides use every core.
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

cargo build --release --quiet
kpg=target/release/kpg
models=target/bench-models
[ -f "$models/small-f32/config.json" ] || "$kpg" synth --arch llama --preset small --dtype f32 --out "$models/small-f32"
[ -f "$models/tiny-f32/config.json" ] || "$kpg" synth --arch llama --preset tiny --dtype f32 --out "$models/tiny-f32"

echo "== LLaMA forward, small preset, f32 (criterion; see target/criterion for details)" >&2
cargo bench --quiet -p kpg-extras --bench cpu_forward -- --noplot 2>"$out/cpu_forward.err" | grep -E '^cpu_forward|time:|thrpt:' | tee "$out/cpu_forward.txt" >&2
run peer_cpu_forward "$py" tools/peer_cpu_forward.py --model "$models/small-f32" --repeats 10

echo "== Selector, tiny preset" >&2
run kpg_select_1 "$kpg" bench select --selector "$models/tiny-f32" --docs 64 --candidates 10 --dump "$out/programs.json"
run peer_select "$py" tools/peer_select.py --selector "$models/tiny-f32" --programs "$out/programs.json"
run kpg_select_2 "$kpg" bench select --selector "$models/tiny-f32" --docs 64 --candidates 10

echo "== One2Set generator, tiny and base presets, KP20k test documents (first 256 / 64)" >&2
data=${KPG_DATA:-../shared/data}/kp20k.test.first1000.one2set.jsonl.gz
for preset in tiny:256 base:64; do
  name=${preset%%:*}; docs=${preset##*:}
  [ -f "$models/one2set-$name/config.json" ] || "$kpg" synth --arch one2set --preset "$name" --out "$models/one2set-$name"
  run "kpg_generate_$name" "$kpg" bench generate --generator "$models/one2set-$name" --input "$data" --docs "$docs" --dump "$out/generate-$name.jsonl"
  run "peer_generate_$name" "$py" tools/peer_generate.py --generator "$models/one2set-$name" --dump "$out/generate-$name.jsonl"
done
