#!/usr/bin/env python3
"""An independent check of `kpg eval --tokenized`: the One2Set evaluation protocol in plain Python.

It follows `evaluate_prediction.py` of jiacheng-ye/kg_one2set (after kenchan0226/
keyphrase-generation-rl) as run for the One2Set papers' numbers (`-invalidate_unk
-disable_extra_one_word_filter`, k in {5, M}), with NLTK's PorterStemmer:

  * source = title tokens + abstract tokens, each text stripped and split on single spaces;
  * every token stemmed as `stemmer.stem(w.strip().lower())`;
  * predictions that are empty or contain a `,`, `.` or `<unk>` token are dropped, then duplicates
    (after stemming; the first is kept); duplicate gold phrases are dropped;
  * present = the stemmed phrase occurs contiguously in the stemmed source; predictions and gold
    are split into present and absent, and each half is scored on its own;
  * P@k = matches in the top k / k (k = number of predictions for M), R@k = matches / gold of that
    kind, both 0 for a document without predictions (or without gold, for R);
  * P and R macro-averaged over all documents; F1 = 2PR / (P + R) of those averages.

Like kpg it compares phrases as token tuples and drops gold phrases without tokens (the original
joins tokens with '_' and keeps empty gold phrases as unmatchable absent ones); these matter only
for phrases with a '_' inside a token or with no tokens, which no shared test set's gold has. It also reports dup_token_ratio: 1 - distinct stemmed
tokens / stemmed tokens over a document's predictions as given, averaged over documents.

Input formats are those of `kpg eval` (gold and predictions as JSONL, optionally gzip-compressed;
predictions as {"id", "keyphrases"} or {"id", "candidates": [{"phrase", ...}]}, keyphrases first).

Usage:
    python tools/one2set_eval.py --pred PRED.jsonl --gold GOLD.jsonl.gz
"""

import argparse
import gzip
import json
import sys

from nltk.stem import PorterStemmer

STEMMER = PorterStemmer()


def open_text(path):
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, "r", encoding="utf-8")


def read_jsonl(path):
    with open_text(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def prediction_phrases(rec):
    if rec.get("keyphrases") is not None:
        return rec["keyphrases"]
    return [c if isinstance(c, str) else c["phrase"] for c in rec["candidates"]]


def split_tokens(text):
    text = text.strip()
    return text.split(" ") if text else []


def stem_word_list(words):
    return [STEMMER.stem(w.strip().lower()) for w in words]


def check_valid(phrase):
    if len(phrase) == 0:
        return False
    return not any(w in (",", ".", "<unk>") for w in phrase)


def unique(phrases):
    seen, out = set(), []
    for p in phrases:
        key = tuple(p)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def is_present(src, phrase):
    n = len(phrase)
    if n == 0:
        return False
    for start in range(len(src) - n + 1):
        if src[start:start + n] == phrase:
            return True
    return False


def precision_recall_at(is_match, num_gold, k):
    """k is an int or 'M'."""
    num_pred = len(is_match)
    if num_pred == 0:
        return 0.0, 0.0
    topk = num_pred if k == "M" else k
    num_matched = sum(is_match[:topk]) if num_pred > topk else sum(is_match)
    precision = num_matched / topk if topk > 0 else 0.0
    recall = num_matched / num_gold if num_gold > 0 else 0.0
    return precision, recall


def evaluate(gold_recs, pred_recs):
    preds_by_id = {str(r["id"]): prediction_phrases(r) for r in pred_recs}
    gold_ids = {str(g["id"]) for g in gold_recs}
    missing = [str(g["id"]) for g in gold_recs if str(g["id"]) not in preds_by_id]
    extra = [i for i in preds_by_id if i not in gold_ids]
    if missing or extra:
        sys.exit(f"ids differ: only in gold {missing[:10]}, only in predictions {extra[:10]}")

    sums = {kind: {f"{m}@{k}": 0.0 for m in ("P", "R") for k in (5, "M")} for kind in ("present", "absent")}
    dup_sum = 0.0
    for g in gold_recs:
        src = stem_word_list(split_tokens(g["title"]) + split_tokens(g["abstract"]))
        pred = [stem_word_list(split_tokens(p)) for p in preds_by_id[str(g["id"])]]
        trg = [stem_word_list(split_tokens(t)) for t in g["keyphrases"]]

        all_tokens = [w for p in pred for w in p]
        dup_sum += 1.0 - len(set(all_tokens)) / len(all_tokens) if all_tokens else 0.0

        pred = unique([p for p in pred if check_valid(p)])
        trg = unique([t for t in trg if t])

        for kind, want in (("present", True), ("absent", False)):
            kind_pred = [p for p in pred if is_present(src, p) == want]
            kind_trg = [t for t in trg if is_present(src, t) == want]
            is_match = [p in kind_trg for p in kind_pred]
            for k in (5, "M"):
                p, r = precision_recall_at(is_match, len(kind_trg), k)
                sums[kind][f"P@{k}"] += p
                sums[kind][f"R@{k}"] += r

    n = len(gold_recs)
    out = {"documents": n}
    for kind in ("present", "absent"):
        scores = {}
        for k in (5, "M"):
            p = sums[kind][f"P@{k}"] / n
            r = sums[kind][f"R@{k}"] / n
            scores[f"P@{k}"] = p
            scores[f"R@{k}"] = r
            scores[f"F1@{k}"] = 2 * p * r / (p + r) if p + r > 0 else 0.0
        out[kind] = scores
    out["dup_token_ratio"] = dup_sum / n
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pred", required=True)
    ap.add_argument("--gold", required=True)
    args = ap.parse_args()
    print(json.dumps(evaluate(read_jsonl(args.gold), read_jsonl(args.pred)), indent=2))


if __name__ == "__main__":
    main()
