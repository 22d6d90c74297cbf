#!/usr/bin/env python3
"""The quality table of docs/QUALITY.md: every system on the five One2Set test sets, scored by
`kpg eval --tokenized` (the One2Set protocol), with the candidate pool's recall.

    tools/quality.py [--data ../shared/data] [--systems tfidf,yake,rake,generator,kpg] [--keep DIR]
                     [--selector DIR] [--split test|valid] [--limit N]

Systems:
- tfidf, yake, rake: tools/baselines.py (top 10 as keyphrases, top 30 as the pool; needs yake and
  multi-rake in this Python);
- generator: `kpg tag --no-ranker`, the default generator alone (its confidence threshold);
- kpg: the default `kpg tag` (generator + extractor pool, ranked by models/ranker), without a
  selector (`--no-selector`): the ranker's cut;
- selector: `kpg tag --selector DIR`: the LLM selector over the ranked pool (sequence labelling,
  candidates by score: S-infer);
- selector-random: the same pools, candidates shuffled (seed 0) and kept in that order
  (`kpg select --keep-order`);
- rerank: the same pools, each candidate judged on its own (`kpg select --rerank`, kept at the
  template's keep_threshold, else 0.5).

--split valid scores the validation sets instead (the KP20k validation sample, inspec.valid), for
choices; --limit N takes each set's first N documents.

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
    "selector": "selector, sequence labelling (candidates by score)",
    "selector-random": "selector, sequence labelling (candidates in random order)",
    "rerank": "selector as a reranker (each candidate alone)",
}
VALID_SETS = ["kp20k", "inspec"]


def gold_path_valid(data, s):
    # (path, tokenized): the KP20k sample is in One2Set form, inspec.valid in original text.
    if s == "kp20k":
        return os.path.join(data, "kp20k.valid.first1000.one2set.jsonl.gz"), True
    return os.path.join(data, "inspec.valid.jsonl.gz"), False


def first_lines(path, n, out):
    import gzip
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f, open(out, "w") as o:
        for i, line in enumerate(f):
            if i >= n:
                break
            o.write(line)
    return out


def run(args):
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {r.stderr[-2000:]}")
    return r


def read_docs(gold):
    """A gold file's documents by id (as a string)."""
    import gzip
    opener = gzip.open if gold.endswith(".gz") else open
    with opener(gold, "rt") as f:
        return {str(d["id"]): d for d in map(json.loads, f)}


def write_select_input(gold, pools, sel_in, arrange=None):
    """`kpg select` records: each ranked pool (a `kpg tag` output line) with its document's title
    and abstract from gold; `arrange` may reorder or cut each candidate list."""
    docs = read_docs(gold)
    with open(sel_in, "w") as o:
        for t in pools:
            d = docs[str(t["id"])]
            cands = [{"phrase": c["phrase"], "score": c["score"]} for c in t["candidates"]]
            if arrange:
                cands = arrange(cands)
            o.write(json.dumps({"id": t["id"], "title": d["title"], "abstract": d["abstract"],
                                "candidates": cands}) + "\n")


def select_on_pool(system, selector, gold, out):
    """The ranked pools of `kpg tag --no-selector`, then `kpg select` over them."""
    import random
    cfg = json.load(open(os.path.join(selector, "kpg_selector.json")))
    pool = out + ".pool.jsonl"
    run([KPG, "tag", "--no-selector", "--input", gold, "--output", pool, "--progress", "none"])
    rng = random.Random(0)
    arrange = None
    if system == "selector-random":
        def arrange(cands):
            cands = sorted(cands, key=lambda c: -c["score"])
            cands = cands[: cfg.get("max_candidates") or len(cands)]
            rng.shuffle(cands)
            return cands
    sel_in = out + ".select-input.jsonl"
    with open(pool) as f:
        write_select_input(gold, map(json.loads, f), sel_in, arrange)
    args = [KPG, "select", "--selector", selector, "--input", sel_in, "--output", out]
    if system == "selector-random":
        args.append("--keep-order")
    else:
        args += ["--rerank", "--threshold", str(cfg.get("keep_threshold") or 0.5)]
    run(args)
    fusion = cfg.get("ranker_fusion")
    if fusion:
        # The rule `kpg tag` applies with this selector (its twin, below), so that the three
        # selector systems differ only in how P(true) was obtained.
        cut = ranker_cut_options()
        judged = {}
        with open(out) as f:
            for line in f:
                t = json.loads(line)
                judged[t["id"]] = {c["phrase"]: c["p_true"] for c in t.get("candidates", [])
                                   if "p_true" in c}
        with open(pool) as f, open(out + ".fused", "w") as o:
            for line in f:
                t = json.loads(line)
                kept = fuse_and_cut(t["candidates"], judged.get(t["id"], {}),
                                    fusion["selector_weight"], fusion.get("present_threshold"),
                                    cut)
                o.write(json.dumps({"id": t["id"],
                                    "keyphrases": [c["phrase"] for c, _, k in kept if k],
                                    "candidates": [c for c, _, _ in kept]}) + "\n")
        os.replace(out + ".fused", out)


def ranker_cut_options(ranker="models/ranker"):
    """The cut settings of a ranker directory's ranker.json."""
    r = json.load(open(os.path.join(ranker, "ranker.json")))
    return {k: r[k] for k in ("present_threshold", "absent_threshold", "min_present")}


def fuse_and_cut(pool, p_true, weight, present_threshold, cut):
    """src/rank/fusion.rs in Python: the pool (a ranked `kpg tag` output's candidates, with the
    ranker's `score`) in fused order, each as (candidate, fused probability, kept)."""
    import math

    def logit(p):
        p = min(max(p, 1e-9), 1 - 1e-9)
        return math.log(p / (1 - p))

    def fused(c):
        p = p_true.get(c["phrase"])
        if p is None or weight == 0:
            return c["score"]
        return 1 / (1 + math.exp(-(logit(c["score"]) + weight * logit(p))))

    order = sorted(((c, fused(c)) for c in pool), key=lambda x: -x[1])
    tp = cut["present_threshold"] if present_threshold is None else present_threshold
    kept = [p >= (tp if c["present"] else cut["absent_threshold"]) for c, p in order]
    n = sum(1 for (c, _), k in zip(order, kept) if k and c["present"])
    for i, (c, _) in enumerate(order):
        if n >= cut["min_present"]:
            break
        if c["present"] and not kept[i]:
            kept[i] = True
            n += 1
    return [(c, p, k) for (c, p), k in zip(order, kept)]


def gold_path(data, s):
    name = "kp20k.test.first1000.one2set" if s == "kp20k" else f"{s}.test.one2set"
    return os.path.join(data, name + ".jsonl.gz")


def predict(system, gold, out, work, selector=None):
    if system in ("selector-random", "rerank"):
        select_on_pool(system, selector, gold, out)
        return None
    if system in ("tfidf", "yake", "rake"):
        here = os.path.dirname(os.path.abspath(__file__))
        subprocess.run([sys.executable, os.path.join(here, "baselines.py"), system, gold, out],
                       check=True, cwd=work if system != "tfidf" else None)
        return None
    args = [KPG, "tag", "--input", gold, "--output", out, "--progress", "none"]
    if system == "generator":
        args.append("--no-ranker")
    elif system == "selector":
        args += ["--selector", selector]
    else:
        args.append("--no-selector")
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {r.stderr}")
    m = re.search(r"kpg tag: (\d+) documents.*, ([\d.]+) s, ([\d.]+) documents/s", r.stderr)
    return (int(m.group(1)), float(m.group(2))) if m else None


def evaluate(pred, gold, tokenized=True):
    args = [KPG, "eval", "--pred", pred, "--gold", gold] + (["--tokenized"] if tokenized else [])
    r = subprocess.run(args, check=True, capture_output=True, text=True)
    return json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--systems", default="tfidf,yake,rake,generator,kpg")
    ap.add_argument("--keep", help="keep the prediction files here")
    ap.add_argument("--selector", help="the selector directory of the selector systems")
    ap.add_argument("--split", choices=["test", "valid"], default="test")
    ap.add_argument("--limit", type=int, help="each set's first N documents")
    a = ap.parse_args()
    work = a.keep or tempfile.mkdtemp(prefix="kpg-quality-")
    os.makedirs(work, exist_ok=True)
    cols = ["present F1@5", "present F1@M", "absent F1@5", "absent F1@M",
            "pool present recall", "pool absent recall", "candidates/doc", "dup-token ratio"]
    print("| system | test set | docs | " + " | ".join(cols) + " |")
    print("|---|---|---:|" + "---:|" * len(cols))
    for system in a.systems.split(","):
        rows, docs, secs = [], 0, 0.0
        for s in (SETS if a.split == "test" else VALID_SETS):
            gold, tokenized = (gold_path(a.data, s), True) if a.split == "test" \
                else gold_path_valid(a.data, s)
            if a.limit:
                gold = first_lines(gold, a.limit, os.path.join(work, f"gold.{s}.jsonl"))
            pred = os.path.join(work, f"{system}.{s}.jsonl")
            timing = predict(system, gold, pred, work, a.selector)
            if timing:
                docs, secs = docs + timing[0], secs + timing[1]
            r = evaluate(pred, gold, tokenized)
            pool = r.get("pool") or {}
            row = [r["present"]["F1@5"], r["present"]["F1@M"], r["absent"]["F1@5"], r["absent"]["F1@M"],
                   pool.get("present", {}).get("recall_micro", float("nan")),
                   pool.get("absent", {}).get("recall_micro", float("nan")),
                   pool.get("candidates_per_document", float("nan")), r.get("dup_token_ratio", float("nan"))]
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
