#!/usr/bin/env python3
"""The quality table of docs/QUALITY.md: every system on the five One2Set test sets, scored by
`kpg eval --tokenized` (the One2Set protocol), with the candidate pool's recall.

    tools/quality.py [--data ../shared/data] [--systems tfidf,yake,rake,generator,kpg] [--keep DIR]

Systems:
- tfidf, yake, rake: tools/baselines.py (top 10 as keyphrases, top 30 as the pool; needs yake and
  multi-rake in this Python);
- generator: `kpg tag --no-ranker`, the default generator alone (its confidence threshold);
- kpg: the default `kpg tag` (generator + extractor pool, ranked by models/ranker).

Prints the markdown table on stdout, and the default `kpg tag`'s documents/s (from its summary
line) on stderr. Run from the repository root with a release build (KPG, default
target/release/kpg). Test sets only: run it once choices are made on validation data.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

KPG = os.environ.get("KPG", "target/release/kpg")
SETS = ["inspec", "krapivin", "nus", "semeval", "kp20k"]
NAMES = {
    "tfidf": "TF-IDF 1-3-grams (IDF: acmcr.train), top 10",
    "yake": "YAKE (pip yake), top 10",
    "rake": "RAKE (pip multi-rake), top 10",
    "generator": "generator alone (`kpg tag --no-ranker`)",
    "kpg": "default `kpg tag` (generator + extractor, ranked)",
}


def gold_path(data, s):
    name = "kp20k.test.first1000.one2set" if s == "kp20k" else f"{s}.test.one2set"
    return os.path.join(data, name + ".jsonl.gz")


def predict(system, gold, out, work):
    if system in ("tfidf", "yake", "rake"):
        here = os.path.dirname(os.path.abspath(__file__))
        subprocess.run([sys.executable, os.path.join(here, "baselines.py"), system, gold, out],
                       check=True, cwd=work if system != "tfidf" else None)
        return None
    args = [KPG, "tag", "--input", gold, "--output", out, "--progress", "none"]
    if system == "generator":
        args.append("--no-ranker")
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {r.stderr}")
    m = re.search(r"kpg tag: (\d+) documents.*, ([\d.]+) s, ([\d.]+) documents/s", r.stderr)
    return (int(m.group(1)), float(m.group(2))) if m else None


def evaluate(pred, gold):
    r = subprocess.run([KPG, "eval", "--tokenized", "--pred", pred, "--gold", gold],
                       check=True, capture_output=True, text=True)
    return json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--systems", default="tfidf,yake,rake,generator,kpg")
    ap.add_argument("--keep", help="keep the prediction files here")
    a = ap.parse_args()
    work = a.keep or tempfile.mkdtemp(prefix="kpg-quality-")
    os.makedirs(work, exist_ok=True)
    cols = ["present F1@5", "present F1@M", "absent F1@5", "absent F1@M",
            "pool present recall", "pool absent recall", "candidates/doc"]
    print("| system | test set | docs | " + " | ".join(cols) + " |")
    print("|---|---|---:|" + "---:|" * len(cols))
    for system in a.systems.split(","):
        rows, docs, secs = [], 0, 0.0
        for s in SETS:
            gold = gold_path(a.data, s)
            pred = os.path.join(work, f"{system}.{s}.jsonl")
            timing = predict(system, gold, pred, work)
            if timing:
                docs, secs = docs + timing[0], secs + timing[1]
            r = evaluate(pred, gold)
            pool = r.get("pool") or {}
            row = [r["present"]["F1@5"], r["present"]["F1@M"], r["absent"]["F1@5"], r["absent"]["F1@M"],
                   pool.get("present", {}).get("recall_micro", float("nan")),
                   pool.get("absent", {}).get("recall_micro", float("nan")),
                   pool.get("candidates_per_document", float("nan"))]
            rows.append(row)
            cells = " | ".join(f"{v:.1f}" if i == 6 else f"{v:.3f}" for i, v in enumerate(row))
            print(f"| {NAMES[system]} | {s} | {r['documents']} | {cells} |", flush=True)
        mean = [sum(r[i] for r in rows) / len(rows) for i in range(len(cols))]
        cells = " | ".join(f"{v:.1f}" if i == 6 else f"**{v:.3f}**" for i, v in enumerate(mean))
        print(f"| {NAMES[system]} | **mean** | | {cells} |", flush=True)
        if docs:
            print(f"{system}: {docs} documents in {secs:.1f} s of `kpg tag`: {docs / secs:.1f} documents/s",
                  file=sys.stderr)


if __name__ == "__main__":
    main()
