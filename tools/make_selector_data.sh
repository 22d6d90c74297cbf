#!/usr/bin/env bash
# The selector's training and validation records, rebuilt from the shared data with kpg itself:
# the default generator + ranker pool of each document (`kpg tag --no-selector`), each candidate labelled by
# the evaluation's stemmed match to the gold keyphrases (`kpg selector-data`).
#
# Training:
# - train.jsonl: the 3,100 acmcr records the ranker holds out (every 25th, as tools/train_ranker.py
#   splits them), whose own keyphrases are not in the shipped ranker's retrieval tables, so that
#   their pools look like a new document's;
# - inspec.train, krapivin.train and kp20k.train (the KP20k train sample): pooled by the shipped
#   trees over the tables they were trained with (acmcr without the held-out records). The shipped
#   tables also count these three sets, which would put each document's own keyphrases into its
#   pool;
# - train.all.jsonl: all four (6,979 records; the trainer shuffles the records every epoch).
# Validation: the KP20k validation sample and inspec.valid, and valid.mixed.jsonl, the first 50
# of each. No test set is read.
#
#     tools/make_selector_data.sh [DATA_DIR] [OUT_DIR]     # defaults: ../shared/data, local/selector-data
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
OUT=${2:-local/selector-data}
KPG=${KPG:-target/release/kpg}
mkdir -p "$OUT"

# acmcr without the record that duplicates a Krapivin test document, split as
# tools/train_ranker.py's split_acmcr does: every 25th record held out, the rest for the tables.
python3 - "$DATA/acmcr.train.jsonl.gz" "$OUT/acmcr.holdout.jsonl" "$OUT/acmcr.tables.jsonl" <<'PY'
import gzip, json, sys
DUPLICATE_OF_TEST = {"10.1145/1508850.1508851"}  # as tools/train_ranker.py
with gzip.open(sys.argv[1], "rt") as f, open(sys.argv[2], "w") as held, open(sys.argv[3], "w") as rest:
    for i, line in enumerate(f):
        if json.loads(line)["id"] in DUPLICATE_OF_TEST:
            continue
        (held if i % 25 == 0 else rest).write(line)
PY

label() { # name gold [kpg tag options]
    "$KPG" tag --input "$2" --output "$OUT/$1.tagged.jsonl" "${@:3}"
    "$KPG" selector-data --tagged "$OUT/$1.tagged.jsonl" --gold "$2" --output "$OUT/$1.jsonl"
}
label train "$OUT/acmcr.holdout.jsonl" --no-selector
label valid.kp20k "$DATA/kp20k.valid.first1000.one2set.jsonl.gz" --no-selector
label valid.inspec "$DATA/inspec.valid.jsonl.gz" --no-selector

# The shipped trees over tables without the three small training sets.
TABLES="$OUT/ranker-without-train-sets"
mkdir -p "$TABLES"
cp models/ranker/ranker.json "$TABLES/"
"$KPG" ranker tables --train "$OUT/acmcr.tables.jsonl" --out "$TABLES"
label inspec.train "$DATA/inspec.train.jsonl.gz" --ranker "$TABLES" --no-selector
label krapivin.train "$DATA/krapivin.train.jsonl.gz" --ranker "$TABLES" --no-selector
label kp20k.train "$DATA/kp20k.train.first1000.one2set.jsonl.gz" --ranker "$TABLES" --no-selector
cat "$OUT"/{train,inspec.train,krapivin.train,kp20k.train}.jsonl > "$OUT/train.all.jsonl"
{ head -n 50 "$OUT/valid.kp20k.jsonl"; head -n 50 "$OUT/valid.inspec.jsonl"; } > "$OUT/valid.mixed.jsonl"
