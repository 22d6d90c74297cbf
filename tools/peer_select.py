#!/usr/bin/env python3
"""The transformers peer of `kpg bench select`: the same selector weights, the same token programs
(prompt, forced text, label positions) and the same decision rule, run with Hugging Face
`generate` and a logits processor that forces the template's tokens and restricts each choice to
the two label tokens. Documents run one at a time (batch 1, KV cache on), as a user of generate
would run a fixed-format labelling prompt.

    kpg bench select --selector DIR --docs 32 --candidates 10 --dump /tmp/programs.json
    python tools/peer_select.py --selector DIR --programs /tmp/programs.json

Prints one JSON line: documents/s, and how many decisions agree with kpg's.
"""

import argparse
import json
import os
import time

import torch
import transformers
from transformers import LlamaForCausalLM, LogitsProcessor, LogitsProcessorList


class Program(LogitsProcessor):
    """At each step, allow only the program's next token: a forced token, or one of two labels."""

    def __init__(self, tokens, labels):
        self.tokens = tokens
        self.labels = {l["pos"]: l["ids"] for l in labels}

    def __call__(self, input_ids, scores):
        pos = input_ids.shape[1]
        allowed = self.labels.get(pos, [self.tokens[pos]] if pos < len(self.tokens) else None)
        if allowed is None:
            return scores
        mask = torch.full_like(scores, float("-inf"))
        mask[:, allowed] = 0
        return scores + mask


def run_program(model, program):
    tokens, labels = program["tokens"], program["labels"]
    first, last = labels[0]["pos"], labels[-1]["pos"]
    ids = torch.tensor([tokens[:first]])
    out = model.generate(ids, max_new_tokens=last - first + 1, do_sample=False,
                         logits_processor=LogitsProcessorList([Program(tokens, labels)]),
                         pad_token_id=0, eos_token_id=None, output_logits=True,
                         return_dict_in_generate=True)
    seq = out.sequences[0].tolist()
    decisions, p_true = [], []
    for l in labels:
        yes, no = l["ids"]
        decisions.append(seq[l["pos"]] == yes)
        raw = out.logits[l["pos"] - first][0]
        p_true.append(torch.sigmoid(raw[yes] - raw[no]).item())
    return decisions, p_true


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--selector", required=True)
    ap.add_argument("--programs", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = LlamaForCausalLM.from_pretrained(args.selector, dtype=torch.float32).eval()
    docs = json.load(open(args.programs))
    with torch.inference_mode():
        run_program(model, docs[0]["programs"][0])  # warm-up
        agree = total = 0
        max_dp = 0.0
        start = time.perf_counter()
        for doc in docs:
            decisions, p_true = [], []
            for program in doc["programs"]:
                if program["labels"]:
                    d, p = run_program(model, program)
                    decisions += d
                    p_true += p
            total += len(decisions)
            agree += sum(a == b for a, b in zip(decisions, doc["selected"]))
            max_dp = max([max_dp] + [abs(a - b) for a, b in zip(p_true, doc["p_true"])])
        secs = time.perf_counter() - start
    print(json.dumps({
        "peer": "transformers",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "threads": args.threads,
        "docs": len(docs),
        "seconds": round(secs, 3),
        "documents_per_s": round(len(docs) / secs, 3),
        "decisions": total,
        "decisions_agreeing_with_kpg": agree,
        "max_abs_p_true_difference": max_dp,
    }))


if __name__ == "__main__":
    main()
