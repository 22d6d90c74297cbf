#!/usr/bin/env python3
"""Chooses a trained selector's keep_threshold on validation data.

Runs `kpg tag --selector DIR` once on each validation set (greedy decisions, with every
candidate's P(true)), then scores the keyphrases that each threshold would keep (candidates with
P(true) >= t, in the order shown) with `kpg eval`, and prints mean present and absent F1@M per
threshold beside the ranker's cut (`kpg tag --no-selector`). Offline, a threshold does not feed
its decisions back into later ones as a real run does; check the chosen one with
`tools/quality.py --split valid --systems kpg,selector` after writing it into kpg_selector.json.

It also scores a veto, the two stages combined the other way round (`--vetoes`): the ranker's cut
less the candidates to which the selector (greedy, as it ran) gives P(true) below v; a candidate
the selector was not shown (past max_candidates) stays. kpg has no such mode yet; this measures
whether one would be worth building.

    python3 tools/tune_keep_threshold.py --selector checkpoints/selector-smollm2-r8 [--limit 150]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quality  # noqa: E402

KPG = quality.KPG


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--selector", required=True)
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--thresholds", default="0.3,0.4,0.5,0.6,0.7,0.8,0.85,0.9,0.95")
    ap.add_argument("--vetoes", default="0.05,0.1,0.15,0.2")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="kpg-threshold-")
    thresholds = [float(t) for t in a.thresholds.split(",")]
    rows = {t: [] for t in thresholds}
    vetoes = [float(v) for v in a.vetoes.split(",") if v]
    veto_rows = {v: [] for v in vetoes}
    ranker = []
    for s in quality.VALID_SETS:
        gold, tokenized = quality.gold_path_valid(a.data, s)
        if a.limit:
            gold = quality.first_lines(gold, a.limit, os.path.join(work, f"gold.{s}.jsonl"))
        tagged = os.path.join(work, f"selector.{s}.jsonl")
        quality.run([KPG, "tag", "--selector", a.selector, "--input", gold, "--output", tagged,
                     "--progress", "none"])
        plain = os.path.join(work, f"ranker.{s}.jsonl")
        quality.run([KPG, "tag", "--no-selector", "--input", gold, "--output", plain,
                     "--progress", "none"])
        r = quality.evaluate(plain, gold, tokenized)
        ranker.append((r["present"]["F1@M"], r["absent"]["F1@M"]))
        lines = [json.loads(l) for l in open(tagged)]
        cut = {l["id"]: l["keyphrases"] for l in map(json.loads, open(plain))}
        for v in vetoes:
            pred = os.path.join(work, f"veto{v}.{s}.jsonl")
            with open(pred, "w") as f:
                for l in lines:
                    p_true = {c["phrase"]: c["p_true"] for c in l.get("candidates", [])
                              if "p_true" in c}
                    kept = [k for k in cut.get(l["id"], []) if p_true.get(k, 1.0) >= v]
                    f.write(json.dumps({"id": l["id"], "keyphrases": kept}) + "\n")
            r = quality.evaluate(pred, gold, tokenized)
            veto_rows[v].append((r["present"]["F1@M"], r["absent"]["F1@M"], r["dup_token_ratio"]))
        for t in thresholds:
            pred = os.path.join(work, f"t{t}.{s}.jsonl")
            with open(pred, "w") as f:
                for l in lines:
                    kept = [c["phrase"] for c in l.get("candidates", [])
                            if c.get("p_true", 0.0) >= t]
                    f.write(json.dumps({"id": l["id"], "keyphrases": kept}) + "\n")
            r = quality.evaluate(pred, gold, tokenized)
            rows[t].append((r["present"]["F1@M"], r["absent"]["F1@M"], r["dup_token_ratio"]))
    mean = lambda xs, i: sum(x[i] for x in xs) / len(xs)  # noqa: E731
    print(f"ranker's cut: present F1@M {mean(ranker, 0):.3f}, absent F1@M {mean(ranker, 1):.3f}")
    for t in thresholds:
        print(f"keep_threshold {t}: present F1@M {mean(rows[t], 0):.3f}, absent F1@M "
              f"{mean(rows[t], 1):.3f}, dup-token ratio {mean(rows[t], 2):.3f}")
    for v in vetoes:
        print(f"ranker's cut, vetoed below P(true) {v}: present F1@M {mean(veto_rows[v], 0):.3f}, "
              f"absent F1@M {mean(veto_rows[v], 1):.3f}, dup-token ratio {mean(veto_rows[v], 2):.3f}")


if __name__ == "__main__":
    main()
