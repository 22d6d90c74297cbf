#!/usr/bin/env python3
"""Picks `kpg tag`'s confidence threshold for a generator without a selector: scores the
generator's candidates on a validation set at several thresholds with `kpg eval --tokenized` (the
One2Set protocol) and prints F1@M, present and absent, for each, the best first.

    target/release/kpg generate --generator models/generator \
        --input ../shared/data/kp20k.valid.first1000.one2set.jsonl.gz > /tmp/valid.cand.jsonl
    python3 tools/calibrate_threshold.py --candidates /tmp/valid.cand.jsonl \
        --gold ../shared/data/kp20k.valid.first1000.one2set.jsonl.gz
"""

import argparse
import json
import os
import subprocess
import tempfile


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", required=True, help="kpg generate output")
    ap.add_argument("--gold", required=True)
    ap.add_argument("--kpg", default="target/release/kpg")
    ap.add_argument("--thresholds", default="0,0.05,0.1,0.15,0.2,0.25,0.3,0.35,0.4,0.5,0.6")
    args = ap.parse_args()
    docs = [json.loads(line) for line in open(args.candidates) if line.strip()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for t in [float(x) for x in args.thresholds.split(",")]:
            path = os.path.join(tmp, f"{t}.jsonl")
            with open(path, "w") as f:
                for d in docs:
                    kept = [c["phrase"] for c in d.get("candidates", []) if c["score"] >= t]
                    f.write(json.dumps({"id": d["id"], "keyphrases": kept}) + "\n")
            out = subprocess.run([args.kpg, "eval", "--tokenized", "--pred", path, "--gold", args.gold],
                                 check=True, capture_output=True, text=True).stdout
            r = json.loads(out)
            p, a = r["present"]["F1@M"], r["absent"]["F1@M"]
            rows.append((p + a, t, p, a))
    print("| threshold | present F1@M | absent F1@M |")
    print("|---:|---:|---:|")
    for _, t, p, a in sorted(rows, reverse=True):
        print(f"| {t} | {p:.3f} | {a:.3f} |")


if __name__ == "__main__":
    main()
