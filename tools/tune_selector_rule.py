#!/usr/bin/env python3
"""Chooses how a trained selector's answers become keyphrases, on validation data only.

Tags each validation set twice, with the ranker alone (`kpg tag --no-selector`) and with the
selector (`kpg tag --selector DIR`: greedy decisions, with every judged candidate's P(true)),
then scores with `kpg eval` what each rule would keep:

- keep_threshold t: the candidates with P(true) >= t (the selector's own decisions);
- veto v: the ranker's cut less the candidates given P(true) below v;
- ranker_fusion (w, t): the ranker's cut, at present threshold t, over
  sigmoid(logit(ranker probability) + w * logit(P(true))) (`kpg_selector.json`'s `ranker_fusion`,
  src/rank/fusion.rs; `quality.fuse_and_cut` is its twin, checked against kpg's own output here);
- first 5 of the fused order (w): lists of one length, whose duplicate-token ratio compares how
  two judges order near-duplicates apart from how many candidates their cut keeps.

It prints present and absent F1@M (mean over the validation sets, then each set), present F1@5 and
the duplicate-token ratio per rule, beside the ranker's cut. With `--rerank` it also judges the
same pools with the selector as a reranker (`kpg select --rerank`: each candidate alone, the
baseline of docs/QUALITY.md) and scores every rule over those P(true) as well, so that the two
are compared on the same documents. Offline, a rule does not feed its
decisions back into the selector's later answers; with ranker_fusion kpg does not either (the
selector's greedy labels steer it, the fused cut only decides), so those rows are exact.

    python3 tools/tune_selector_rule.py --selector DIR [--limit N] [--keep local/rule-DIR] [--rerank]

`--keep` keeps (and reuses) the tagged files: tagging the full validation sets with a SmolLM2
selector takes about 20 minutes on two cores, scoring all rules a few seconds.
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


def floats(text):
    return [float(x) for x in text.split(",") if x]


def tag(gold, out, extra):
    if not os.path.exists(out):
        quality.run([KPG, "tag", "--input", gold, "--output", out + ".part", "--progress", "none"]
                    + extra)
        os.rename(out + ".part", out)
        if os.path.exists(out + ".part.kpg-job.json"):  # kpg's resume record of the finished run
            os.remove(out + ".part.kpg-job.json")
    return [json.loads(line) for line in open(out)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--selector", required=True)
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--limit", type=int, help="each validation set's first N documents")
    ap.add_argument("--keep", help="keep (and reuse) the tagged files here")
    ap.add_argument("--thresholds", default="0.3,0.5,0.7")
    ap.add_argument("--vetoes", default="0.1,0.15,0.2,0.25")
    ap.add_argument("--weights", default="0.25,0.5,0.75,1.0")
    ap.add_argument("--fusion-thresholds", default="0.08,0.1,0.12,0.15,0.2")
    ap.add_argument("--rerank", action="store_true",
                    help="score the rules over the selector as a reranker too")
    a = ap.parse_args()
    work = a.keep or tempfile.mkdtemp(prefix="kpg-rule-")
    os.makedirs(work, exist_ok=True)
    cut = quality.ranker_cut_options()
    rules = [("ranker's cut", None)]
    rules += [(f"keep_threshold {t}", ("threshold", t)) for t in floats(a.thresholds)]
    rules += [(f"veto {v}", ("veto", v)) for v in floats(a.vetoes)]
    rules += [(f"ranker_fusion w {w} t {t}", ("fusion", w, t))
              for w in floats(a.weights) for t in floats(a.fusion_thresholds)]
    # The first five of each fused order: lists of one length, so that the duplicate-token ratio
    # measures how the order treats near-duplicates, not how many candidates a rule keeps.
    rules += [(f"first 5 of the fused order, w {w}", ("first", w, 5)) for w in floats(a.weights)]
    judges = ["selector"] + (["rerank"] if a.rerank else [])
    scores = {(j, name): [] for j in judges for name, _ in rules}
    for s in quality.VALID_SETS:
        gold, tokenized = quality.gold_path_valid(a.data, s)
        if a.limit:
            gold = quality.first_lines(gold, a.limit, os.path.join(work, f"gold.{s}.jsonl"))
        ranked = tag(gold, os.path.join(work, f"ranker.{s}.jsonl"), ["--no-selector"])
        judged = tag(gold, os.path.join(work, f"selector.{s}.jsonl"), ["--selector", a.selector])
        p_true = {"selector": p_true_of(judged)}
        check_twin(a.selector, ranked, judged, p_true["selector"], cut)
        if a.rerank:
            p_true["rerank"] = p_true_of(rerank(a.selector, gold, ranked,
                                                os.path.join(work, f"rerank.{s}.jsonl")))
        for j in judges:
            for name, rule in rules:
                if j != "selector" and rule is None:
                    continue  # the ranker's cut does not read P(true): scored once
                pred = os.path.join(work, f"pred.{s}.jsonl")
                with open(pred, "w") as f:
                    for d in ranked:
                        kept = keep(rule, d["candidates"], p_true[j].get(d["id"], {}), cut)
                        f.write(json.dumps({"id": d["id"], "keyphrases": kept}) + "\n")
                r = quality.evaluate(pred, gold, tokenized)
                scores[(j, name)].append((r["present"]["F1@M"], r["absent"]["F1@M"],
                                          r["present"]["F1@5"], r["dup_token_ratio"]))
    sets = " / ".join(quality.VALID_SETS)
    print(f"| P(true) from | rule | present F1@M (mean) | {sets} | absent F1@M | present F1@5 "
          "| dup-token ratio |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for j in judges:
        for name, _ in rules:
            if j != "selector" and name == "ranker's cut":
                continue
            rows = scores[(j, name)]
            mean = lambda i: sum(r[i] for r in rows) / len(rows)  # noqa: E731
            each = " / ".join(f"{r[0]:.4f}" for r in rows)
            print(f"| {j if rules[0][0] != name else '-'} | {name} | {mean(0):.4f} | {each} "
                  f"| {mean(1):.4f} | {mean(2):.4f} | {mean(3):.3f} |")


def p_true_of(judged):
    return {d["id"]: {c["phrase"]: c["p_true"] for c in d["candidates"] if "p_true" in c}
            for d in judged}


def rerank(selector, gold, ranked, out):
    """The ranked pools judged by the selector as a reranker (`kpg select --rerank`), as
    quality.py's rerank system does."""
    if not os.path.exists(out):
        sel_in = out + ".select-input.jsonl"
        quality.write_select_input(gold, ranked, sel_in)
        quality.run([KPG, "select", "--selector", selector, "--input", sel_in, "--output",
                     out + ".part", "--rerank", "--threshold", "0.5"])
        os.rename(out + ".part", out)
    return [json.loads(line) for line in open(out)]


def keep(rule, pool, p_true, cut):
    if rule is None:
        return [c["phrase"] for c in pool if c["selected"]]
    if rule[0] == "threshold":
        return [c["phrase"] for c in pool if p_true.get(c["phrase"], 0.0) >= rule[1]]
    if rule[0] == "veto":
        return [c["phrase"] for c in pool if c["selected"] and p_true.get(c["phrase"], 1.0) >= rule[1]]
    if rule[0] == "first":
        _, w, n = rule
        return [c["phrase"] for c, _, _ in quality.fuse_and_cut(pool, p_true, w, None, cut)][:n]
    _, w, t = rule
    return [c["phrase"] for c, _, k in quality.fuse_and_cut(pool, p_true, w, t, cut) if k]


def check_twin(selector, ranked, judged, p_true, cut):
    """With a selector that has ranker_fusion, kpg's keyphrases are what the twin keeps."""
    fusion = json.load(open(os.path.join(selector, "kpg_selector.json"))).get("ranker_fusion")
    if not fusion:
        return
    w, t = fusion["selector_weight"], fusion.get("present_threshold")
    by_id = {d["id"]: d for d in judged}
    for d in ranked:
        want = [c["phrase"] for c, _, k in
                quality.fuse_and_cut(d["candidates"], p_true.get(d["id"], {}), w, t, cut) if k]
        got = by_id[d["id"]]["keyphrases"]
        if got != want:
            raise SystemExit(f"{d['id']}: kpg kept {got}, the Python twin {want}")


if __name__ == "__main__":
    main()
