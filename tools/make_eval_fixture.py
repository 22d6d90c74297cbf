#!/usr/bin/env python3
"""Writes the `kpg eval` parity fixture under tests/fixtures/eval/:

  inspec30.gold.jsonl.gz     the first 30 documents of ../shared/data/inspec.test.one2set.jsonl.gz,
                             two of them given duplicate gold phrases (one exact, one equal only
                             after stemming)
  inspec30.pred.jsonl        made-up ranked predictions for them, in a shuffled order, in all
                             three shapes `kpg eval` reads, mixing present and absent gold
                             phrases, inflected duplicates, source n-grams that are not gold,
                             invented phrases, and phrases to be filtered out (empty, `,`, `.`,
                             `<unk>`); one document has no predictions, one has three
  inspec30.expected.json     what tools/one2set_eval.py (NLTK) computes for them

tests/eval.rs requires `kpg eval --tokenized` to match the expected figures to 1e-6.

Usage:
    pip install nltk
    python tools/make_eval_fixture.py [--data ../shared/data]
"""

import argparse
import gzip
import json
import os
import random

import nltk

import one2set_eval

N_DOCS = 30
INVENTED = ["neural network", "deep learning model", "graph mining", "query optimization",
            "information retrieval systems", "cloud computing", "genetic algorithm", "data fusion"]


def source_ngrams(rec, rng, count):
    words = (rec["title"] + " " + rec["abstract"]).split(" ")
    out = []
    for _ in range(count * 4):
        n = rng.choice([1, 2, 2, 3])
        start = rng.randrange(0, max(1, len(words) - n))
        gram = words[start:start + n]
        if gram and not any(w in (",", ".", "<digit>") for w in gram):
            out.append(" ".join(gram))
        if len(out) == count:
            break
    return out


def inflect(phrase):
    words = phrase.split(" ")
    last = words[-1]
    words[-1] = last[:-1] if last.endswith("s") else last + "s"
    return " ".join(words).upper() if len(words) % 2 else " ".join(words)


def predictions_for(i, rec, rng):
    if i == 3:
        return []
    gold = list(rec["keyphrases"])
    rng.shuffle(gold)
    preds = gold[: rng.randint(1, max(1, len(gold) - 1))]
    preds += source_ngrams(rec, rng, rng.randint(1, 5))
    preds += rng.sample(INVENTED, rng.randint(0, 2))
    if gold:
        preds.append(inflect(rng.choice(gold)))
    preds.append(rng.choice(preds))  # an exact duplicate
    words = rec["abstract"].split(" ")
    if "," in words:
        c = words.index(",")
        preds.append(" ".join(words[max(0, c - 1): c + 2]))
    preds += ["", "new <unk> method", "o . p . materials"]
    if i == 17:
        preds.append(gold[0].replace(" ", "  ", 1) if " " in gold[0] else gold[0] + "  x")
    rng.shuffle(preds)
    return preds[:3] if i == 7 else preds


def line_for(i, doc_id, preds, rng):
    shape = i % 3
    if shape == 0:
        return {"id": doc_id, "keyphrases": preds}
    candidates = [{"phrase": p, "score": round(1.0 - k / 100, 2), "slot": k % 20, "present": k % 20 < 10}
                  for k, p in enumerate(preds)]
    if shape == 1:  # kpg generate
        return {"id": doc_id, "candidates": candidates}
    # kpg select: the candidates hold extra phrases that were not selected and must be ignored
    extra = [{"phrase": "unselected candidate", "score": 0.01, "slot": 0, "present": False}]
    return {"id": doc_id, "keyphrases": preds, "candidates": extra + candidates}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(here, "..", "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "eval"))
    args = ap.parse_args()

    with gzip.open(os.path.join(args.data, "inspec.test.one2set.jsonl.gz"), "rt", encoding="utf-8") as f:
        gold = [json.loads(next(f)) for _ in range(N_DOCS)]
    gold[5]["keyphrases"].append(inflect(gold[5]["keyphrases"][0]))
    gold[9]["keyphrases"].append(gold[9]["keyphrases"][-1])

    lines = []
    for i, rec in enumerate(gold):
        rng = random.Random(1000 + i)
        lines.append(line_for(i, rec["id"], predictions_for(i, rec, rng), rng))
    random.Random(0).shuffle(lines)

    os.makedirs(args.out, exist_ok=True)
    gold_path = os.path.join(args.out, "inspec30.gold.jsonl.gz")
    with open(gold_path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for rec in gold:
            gz.write((json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8"))
    pred_path = os.path.join(args.out, "inspec30.pred.jsonl")
    with open(pred_path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")

    expected = one2set_eval.evaluate(one2set_eval.read_jsonl(gold_path), one2set_eval.read_jsonl(pred_path))
    expected["meta"] = {"made_by": "tools/make_eval_fixture.py via tools/one2set_eval.py",
                        "nltk": nltk.__version__}
    with open(os.path.join(args.out, "inspec30.expected.json"), "w") as f:
        json.dump(expected, f, indent=2)
        f.write("\n")
    print(json.dumps(expected, indent=2))


if __name__ == "__main__":
    main()
