#!/usr/bin/env bash
# The selector's training and validation records, rebuilt from the shared data with kpg itself:
# the default generator + ranker pool of each document (`kpg tag`), each candidate labelled by
# the evaluation's stemmed match to the gold keyphrases (`kpg selector-data`).
#
# Training: the 3,100 acmcr records the ranker holds out (every 25th, as tools/train_ranker.py
# splits them), the only training documents whose own keyphrases are not in the ranker's
# retrieval tables, so that their pools look like a new document's. Validation: the KP20k
# validation sample and inspec.valid. No test set is read.
#
#     tools/make_selector_data.sh [DATA_DIR] [OUT_DIR]     # defaults: ../shared/data, local/selector-data
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
OUT=${2:-local/selector-data}
KPG=${KPG:-target/release/kpg}
mkdir -p "$OUT"

# Every 25th acmcr record, skipping the one that duplicates a Krapivin test document, as
# tools/train_ranker.py's split_acmcr does.
python3 - "$DATA/acmcr.train.jsonl.gz" "$OUT/acmcr.holdout.jsonl" <<'PY'
import gzip, json, sys
DUPLICATE_OF_TEST = {"10.1145/1508850.1508851"}  # as tools/train_ranker.py
with gzip.open(sys.argv[1], "rt") as f, open(sys.argv[2], "w") as out:
    for i, line in enumerate(f):
        if json.loads(line)["id"] in DUPLICATE_OF_TEST:
            continue
        if i % 25 == 0:
            out.write(line)
PY

label() { # name gold
    "$KPG" tag --input "$2" --output "$OUT/$1.tagged.jsonl"
    "$KPG" selector-data --tagged "$OUT/$1.tagged.jsonl" --gold "$2" --output "$OUT/$1.jsonl"
}
label train "$OUT/acmcr.holdout.jsonl"
label valid.kp20k "$DATA/kp20k.valid.first1000.one2set.jsonl.gz"
label valid.inspec "$DATA/inspec.valid.jsonl.gz"
