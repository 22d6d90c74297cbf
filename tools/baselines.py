#!/usr/bin/env python3
"""The classic keyphrase baselines that kpg is compared with, writing prediction lines that
`kpg eval` scores like kpg's own output:

    tools/baselines.py METHOD GOLD.jsonl[.gz] OUT.jsonl [--idf ../shared/data/acmcr.train.jsonl.gz]

METHOD is one of
- tfidf: 1-3-grams of words cut at stopwords and punctuation, tf x idf with the document
  frequencies of acmcr.train (the IDF table is cached next to OUT as idf.json.gz);
- yake: YAKE! (pip `yake`), n-grams up to 3, its default settings;
- rake: RAKE (pip `multi-rake`), its default English settings.

Each line is `{"id", "keyphrases": [top 10], "candidates": [top 30]}`: the top 10 are the
keyphrases, the top 30 the pool whose recall `kpg eval` reports. Needs a venv with yake and
multi-rake (outside the repository; never run in CI).
"""
import argparse
import gzip
import json
import math
import os
import re
from collections import Counter

STOP = set("""a about above after again against all also am an and any are as at be because been
before being below between both but by can cannot could did do does doing down during each few for
from further had has have having he her here hers herself him himself his how however i if in into
is it its itself just may me might more most must my myself no nor not of off on once one only or
other our ours ourselves out over own paper propose proposed same she should show shown shows so
some such than that the their theirs them themselves then there therefore these they this those
through thus to too two under until up upon us use used uses using very via was we well were what
when where which while who whom why will with within without would you your yours""".split())
TOKEN = re.compile(r"<digit>|<unk>|[a-z0-9]+|[^\sa-z0-9]")


def read(path):
    with (gzip.open(path, "rt") if path.endswith(".gz") else open(path)) as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def tokens(text):
    return TOKEN.findall(text.lower())


def ngrams(doc, n_max=3):
    toks = tokens(doc["title"]) + ["."] + tokens(doc["abstract"])
    out = []
    for i in range(len(toks)):
        for n in range(1, n_max + 1):
            w = toks[i : i + n]
            if len(w) < n or not all(t[0].isalnum() and t not in STOP for t in w):
                break
            out.append(" ".join(w))
    return out


def idf_table(path, cache):
    if os.path.exists(cache):
        with gzip.open(cache, "rt") as f:
            return json.load(f)
    df, n = Counter(), 0
    for d in read(path):
        n += 1
        df.update(set(ngrams(d)))
    table = {"docs": n, "df": {k: v for k, v in df.items() if v >= 2}}
    with gzip.open(cache, "wt") as f:
        json.dump(table, f)
    return table


def tfidf(doc, table):
    tf = Counter(ngrams(doc))
    n = table["docs"]
    score = {k: c * math.log((n + 1) / (table["df"].get(k, 0) + 1)) for k, c in tf.items()}
    return sorted(score, key=lambda k: -score[k])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("method", choices=["tfidf", "yake", "rake"])
    ap.add_argument("gold")
    ap.add_argument("out")
    ap.add_argument("--idf", default="../shared/data/acmcr.train.jsonl.gz")
    a = ap.parse_args()
    if a.method == "tfidf":
        table = idf_table(a.idf, os.path.join(os.path.dirname(os.path.abspath(a.out)), "idf.json.gz"))
        rank = lambda d: tfidf(d, table)
    elif a.method == "yake":
        import yake

        extractor = yake.KeywordExtractor(lan="en", n=3, top=30)
        # YAKE scores: lower is better; it returns them sorted.
        rank = lambda d: [k.lower() for k, _ in extractor.extract_keywords(d["title"] + ". " + d["abstract"])]
    else:
        from multi_rake import Rake

        rake = Rake(language_code="en")
        rank = lambda d: [k.lower() for k, _ in rake.apply(d["title"] + ". " + d["abstract"])]
    with open(a.out, "w") as f:
        for d in read(a.gold):
            ranked = list(dict.fromkeys(rank(d)))
            f.write(json.dumps({"id": d["id"], "keyphrases": ranked[:10], "candidates": ranked[:30]}) + "\n")


if __name__ == "__main__":
    main()
