#!/usr/bin/env bash
# Scores a generator on the five One2Set test sets: `kpg generate` then `kpg eval --tokenized`
# (the One2Set protocol). Prints one markdown table row per test set.
#
#   tools/quality.sh GENERATOR_DIR [DATA_DIR]      # DATA_DIR defaults to ../shared/data
set -euo pipefail
gen=${1:?usage: tools/quality.sh GENERATOR_DIR [DATA_DIR]}
data=${2:-../shared/data}
kpg=${KPG:-target/release/kpg}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "| test set | docs | present F1@5 | present F1@M | absent F1@5 | absent F1@M |"
echo "|---|---:|---:|---:|---:|---:|"
for set in inspec krapivin nus semeval kp20k; do
  gold=$data/$set.test.one2set.jsonl.gz
  [ "$set" = kp20k ] && gold=$data/kp20k.test.first1000.one2set.jsonl.gz
  "$kpg" generate --generator "$gen" --input "$gold" --output "$tmp/$set.jsonl" 2>/dev/null
  "$kpg" eval --tokenized --pred "$tmp/$set.jsonl" --gold "$gold" > "$tmp/$set.json"
  python3 - "$set" "$tmp/$set.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
p, a = r["present"], r["absent"]
print(f"| {sys.argv[1]} | {r['documents']} | {p['F1@5']:.3f} | {p['F1@M']:.3f} | {a['F1@5']:.3f} | {a['F1@M']:.3f} |")
PY
done
