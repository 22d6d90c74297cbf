#!/usr/bin/env python3
"""The PyTorch peer of `kpg bench generate`: the same generator directory and the same documents
(the source tokens that `kpg bench generate --dump FILE` wrote), decoded by tools/one2set_reference.py
on the CPU in float32 under torch.inference_mode, batched over documents (padded) and over all slots
of all documents, with as many threads as kpg uses (all cores).

    kpg bench generate --generator DIR --input DOCS --docs 64 --dump /tmp/bench.jsonl
    python tools/peer_generate.py --generator DIR --dump /tmp/bench.jsonl

Prints one JSON line: documents/s and slots/s of the model work (vocabulary lookup, padding, the
encoder and all decoding steps), fastest of --repeats runs, and of the whole pipeline with the
authors' post-processing and the present/absent tag (NLTK stemming), plus how many documents got
exactly kpg's candidate phrases.
"""

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from one2set_reference import One2SetReference, generate  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", required=True)
    ap.add_argument("--dump", required=True)
    ap.add_argument("--batch-docs", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    from nltk.stem.porter import PorterStemmer

    torch.set_num_threads(args.threads)
    ref = One2SetReference(args.generator)
    recs = [json.loads(l) for l in open(args.dump, encoding="utf-8") if l.strip()]
    tokens = [r["tokens"] for r in recs]

    def model_run():
        for start in range(0, len(tokens), args.batch_docs):
            docs = [ref.prepare(t) for t in tokens[start:start + args.batch_docs]]
            ref.decode_batch(docs)

    with torch.inference_mode():
        model_run()  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            t = time.perf_counter()
            model_run()
            best = min(best, time.perf_counter() - t)
        stem = PorterStemmer().stem
        t = time.perf_counter()
        cands = generate(ref, tokens, args.batch_docs, stem)
        full = time.perf_counter() - t

    same = sum([c["phrase"] for c in got] == [c["phrase"] for c in r["candidates"]]
               for got, r in zip(cands, recs))
    n, N = len(recs), ref.N
    print(json.dumps({
        "peer": "pytorch",
        "torch_version": torch.__version__,
        "threads": args.threads,
        "generator": args.generator,
        "docs": n,
        "batch_docs": args.batch_docs,
        "seconds": round(best, 4),
        "documents_per_s": round(n / best, 2),
        "slots_per_s": round(n * N / best, 1),
        "pipeline_seconds": round(full, 4),
        "pipeline_documents_per_s": round(n / full, 2),
        "same_candidates_as_kpg": f"{same}/{n}",
    }))


if __name__ == "__main__":
    main()
