#!/usr/bin/env python3
"""The selector's decisions from transformers, for tests/selector.rs.

kpg's own test of constrained decoding builds its reference with kpg's prompt code; this fixture
does not. The model is the tiny random-weight selector `kpg synth --arch llama --preset tiny
--seed 42` writes (the test writes the same one); here transformers loads it, the prompt is
rendered by tools/selector_prompt.py from the template, and each label is decided greedily between
the two label tokens with the whole prefix fed again, the decision fed back, in both answer
formats. Written: tests/fixtures/selector/transformers.json.

    python3 tools/make_selector_fixture.py [--kpg target/release/kpg]

Needs torch and transformers (CPU).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
import transformers
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from selector_prompt import label_positions, render  # noqa: E402

RECORDS = [
    {"id": "a", "title": "Optimal transport for keyphrase generation",
     "abstract": "We assign keyphrase targets to control codes with optimal transport and a set decoder.",
     "candidates": [{"phrase": "optimal transport", "score": 0.9},
                    {"phrase": "set decoder", "score": 0.4},
                    {"phrase": "keyphrase generation", "score": 0.7},
                    {"phrase": "control codes", "score": 0.4},
                    {"phrase": "sinkhorn", "score": 0.1}]},
    {"id": "b", "title": "Selecting keyphrases with a language model",
     "abstract": "A small instruct model reads the document and labels each candidate, dropping synonyms.",
     "candidates": [{"phrase": "language model", "score": 0.2},
                    {"phrase": "synonyms", "score": 0.8},
                    {"phrase": "instruct model", "score": 0.5},
                    {"phrase": "candidate labelling", "score": 0.5},
                    {"phrase": "keyphrase selection", "score": 0.95},
                    {"phrase": "document", "score": 0.3}]},
    {"id": "c", "title": "Paged attention",
     "abstract": "Blocks of keys and values are shared between sequences that start alike.",
     "candidates": [{"phrase": "paged attention", "score": 0.6},
                    {"phrase": "kv cache", "score": 0.6},
                    {"phrase": "prefix sharing", "score": 0.61}]},
]


def by_score(cands):
    # kpg's presentation order: descending score, stable for ties.
    return sorted(cands, key=lambda c: -c["score"])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kpg", default="target/release/kpg")
    p.add_argument("--out", default="tests/fixtures/selector/transformers.json")
    a = p.parse_args()
    work = tempfile.mkdtemp()
    subprocess.run([a.kpg, "synth", "--arch", "llama", "--preset", "tiny", "--dtype", "f32",
                    "--seed", "42", "--out", work], check=True, capture_output=True)
    model = LlamaForCausalLM.from_pretrained(work, dtype=torch.float32).eval()
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(work, "tokenizer.json"))
    base = json.load(open(os.path.join(work, "kpg_selector.json")))
    interleaved = dict(base, answer_format="interleaved", answer_item="\n{n}. {phrase}: {label}")
    cases = []
    for name, cfg in [("labels", base), ("interleaved", interleaved)]:
        out = []
        for r in RECORDS:
            phrases = [c["phrase"] for c in by_score(r["candidates"])]
            yes_text, yes_spans = render(cfg, tok, r, phrases, cfg["labels"]["true"])
            no_text, no_spans = render(cfg, tok, r, phrases, cfg["labels"]["false"])
            ids, pos = label_positions(tok, yes_text, yes_spans)
            no_ids, no_pos = label_positions(tok, no_text, no_spans)
            assert pos == no_pos and len(ids) == len(no_ids)
            selected, p_true = [], []
            with torch.no_grad():
                for slot in pos:
                    yes_id, no_id = ids[slot], no_ids[slot]
                    logits = model(input_ids=torch.tensor([ids[:slot]])).logits[0, -1]
                    lt, lf = logits[yes_id].item(), logits[no_id].item()
                    keep = lt > lf or (lt == lf and yes_id < no_id)
                    ids[slot] = yes_id if keep else no_id
                    selected.append(keep)
                    p_true.append(torch.sigmoid(logits[yes_id] - logits[no_id]).item())
            out.append({"record": r, "phrases": phrases, "ids": ids[:pos[-1] + 1],
                        "selected": selected, "p_true": p_true})
        cases.append({"format": name, "template": cfg, "documents": out})
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"transformers_version": transformers.__version__,
                   "torch_version": torch.__version__,
                   "model": "kpg synth --arch llama --preset tiny --dtype f32 --seed 42",
                   "cases": cases}, f, indent=1)
    print(a.out, sum(len(d["selected"]) for c in cases for d in c["documents"]), "decisions")


if __name__ == "__main__":
    main()
