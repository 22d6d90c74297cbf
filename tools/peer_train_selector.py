#!/usr/bin/env python3
"""The PyTorch + peft peer of `kpg train selector`: the same base model (a GGUF file through
transformers' `gguf_file=`, dequantized to f32, or a Hugging Face directory), LoRA of the same rank,
alpha and targets, the same labelled records rendered with the same template (by
tools/selector_prompt.py, candidates by score, the first --max-candidates), the loss on the label
tokens only with class-balanced weights, AdamW, clipping; one optimiser step per --batch-size
records. Times --steps steps after one warm-up step and prints one JSON line with tokens/s and
records/s, for docs/PERF.md.

    python3 tools/peer_train_selector.py --selector local/runs/sel1 \
        --train local/selector-data/train.jsonl --steps 3 --batch-size 8

`--selector` is a directory written by `kpg train selector` (its kpg_selector.json gives the
template and the base model). Threads: torch's default (one per core), as a user would run it.
"""

import argparse
import json
import os
import sys
import time

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from selector_prompt import label_positions, render  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def sequence(cfg, tok, record, max_candidates):
    cands = sorted(record["candidates"], key=lambda c: -c["score"])[:max_candidates]
    phrases = [c["phrase"] for c in cands]
    yes_text, spans = render(cfg, tok, record, phrases, cfg["labels"]["true"])
    no_text, _ = render(cfg, tok, record, phrases, cfg["labels"]["false"])
    ids, pos = label_positions(tok, yes_text, spans)
    no_ids, _ = label_positions(tok, no_text, spans)
    targets = []
    for p, c in zip(pos, cands):
        ids[p] = ids[p] if c["label"] else no_ids[p]
        targets.append(ids[p])
    return ids[: pos[-1] + 1], [p - 1 for p in pos], targets, [c["label"] for c in cands]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--selector", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16.0)
    ap.add_argument("--max-candidates", type=int, default=15)
    a = ap.parse_args()
    cfg = json.load(open(os.path.join(a.selector, "kpg_selector.json")))
    base = os.path.normpath(os.path.join(a.selector, cfg["base_model"]))
    kwargs = dict(dtype=torch.float32, attn_implementation="sdpa")
    where = base
    if base.endswith(".gguf"):
        kwargs["gguf_file"] = os.path.basename(base)
        where = os.path.dirname(base)
    tok = AutoTokenizer.from_pretrained(where, **({"gguf_file": kwargs["gguf_file"]}
                                                  if "gguf_file" in kwargs else {}))
    model = AutoModelForCausalLM.from_pretrained(where, **kwargs)
    model = get_peft_model(model, LoraConfig(r=a.rank, lora_alpha=a.alpha, lora_dropout=0.0,
                                             target_modules=TARGETS)).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4,
                            weight_decay=0.0)
    records = [json.loads(l) for l in open(a.train)]
    need = (a.steps + 1) * a.batch_size
    seqs = []
    for r in records:
        if len(seqs) == need:
            break
        if r["candidates"]:
            seqs.append(sequence(cfg, tok, r, a.max_candidates))

    def step(batch):
        labels = [l for s in batch for l in s[3]]
        t, f = sum(labels), len(labels) - sum(labels)
        wt = (0.5 / t if f else 1.0 / t) if t else 0.0
        wf = (0.5 / f if t else 1.0 / f) if f else 0.0
        opt.zero_grad()
        for ids, rows, targets, labs in batch:
            logits = model(input_ids=torch.tensor([ids])).logits[0]
            ce = torch.nn.functional.cross_entropy(logits[rows], torch.tensor(targets),
                                                   reduction="none")
            w = torch.tensor([wt if l else wf for l in labs])
            (w * ce).sum().backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        return sum(len(s[0]) for s in batch)

    step(seqs[: a.batch_size])  # warm-up
    start = time.perf_counter()
    tokens = 0
    for i in range(1, a.steps + 1):
        tokens += step(seqs[i * a.batch_size:(i + 1) * a.batch_size])
    secs = time.perf_counter() - start
    print(json.dumps({
        "peer": "pytorch+peft", "torch_version": torch.__version__,
        "transformers_version": transformers.__version__, "peft_version": peft.__version__,
        "threads": torch.get_num_threads(), "steps": a.steps, "batch_size": a.batch_size,
        "tokens": tokens, "seconds": round(secs, 2), "tokens_per_s": round(tokens / secs, 1),
        "records_per_s": round(a.steps * a.batch_size / secs, 3),
    }))


if __name__ == "__main__":
    main()
