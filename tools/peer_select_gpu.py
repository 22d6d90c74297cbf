#!/usr/bin/env python3
"""The transformers peer of `kpg bench select --device cuda`, at its best settings: bf16 weights,
SDPA attention, and documents batched through `generate` (left-padded prompts, KV cache on). The
same selector weights, token programs and decision rule as kpg: a logits processor forces each
row's template tokens and restricts each choice to the row's two label tokens.

    kpg bench select --device cuda --selector DIR --docs 256 --candidates 20 --dump /tmp/p.json
    python tools/peer_select_gpu.py --selector DIR --programs /tmp/p.json --batch 64

Prints one JSON line: documents/s, and how many decisions agree with kpg's. `--device cpu --dtype
float32` runs it on a machine without a GPU (a tiny synth model), to check it, or to compare with
kpg on the CPU.

A trained selector (`kpg train selector`: a kpg_selector.json naming its `base_model`, and a peft
adapter beside it) loads as a user of transformers would run it: the base (a Hugging Face
directory, or a GGUF file through `gguf_file=`, dequantized), the adapter by peft, merged into the
weights (peft's fastest way to serve a LoRA).
"""

import argparse
import json
import os
import time

import torch
import transformers
from transformers import LlamaForCausalLM, LogitsProcessor, LogitsProcessorList


class BatchedPrograms(LogitsProcessor):
    """Row r at generated step s may only emit its program's token there: a forced token, one of
    two labels, or padding once its program is done. One tensor of allowed ids per step, built
    once up front, so the per-step cost is a gather, not a Python loop over rows."""

    def __init__(self, allowed, prompt_len):
        self.allowed = allowed        # [steps, rows, 2] token ids (a forced token appears twice)
        self.prompt_len = prompt_len  # padded prompt length

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.prompt_len
        allowed = self.allowed[step]
        mask = torch.full_like(scores, float("-inf"))
        mask.scatter_(1, allowed, 0.0)
        return scores + mask


def run_batch(model, programs, pad_id, device):
    """Runs a batch of programs; returns per program (decisions, p_true)."""
    firsts = [p["labels"][0]["pos"] for p in programs]
    prompt_len = max(firsts)
    steps = max(p["labels"][-1]["pos"] - f + 1 for p, f in zip(programs, firsts))
    rows = len(programs)
    ids = torch.full((rows, prompt_len), pad_id, dtype=torch.long)
    mask = torch.zeros((rows, prompt_len), dtype=torch.long)
    allowed = torch.full((steps, rows, 2), pad_id, dtype=torch.long)
    for r, (p, first) in enumerate(zip(programs, firsts)):
        tokens = p["tokens"]
        ids[r, prompt_len - first:] = torch.tensor(tokens[:first])
        mask[r, prompt_len - first:] = 1
        labels = {l["pos"]: l["ids"] for l in p["labels"]}
        for s in range(steps):
            pos = first + s
            if pos in labels:
                allowed[s, r] = torch.tensor(labels[pos])
            elif pos < len(tokens):
                allowed[s, r] = tokens[pos]
    out = model.generate(ids.to(device), attention_mask=mask.to(device), max_new_tokens=steps,
                         do_sample=False,
                         logits_processor=LogitsProcessorList(
                             [BatchedPrograms(allowed.to(device), prompt_len)]),
                         pad_token_id=pad_id, eos_token_id=None, output_logits=True,
                         return_dict_in_generate=True)
    results = []
    for r, (p, first) in enumerate(zip(programs, firsts)):
        decisions, p_true = [], []
        for l in p["labels"]:
            s = l["pos"] - first
            yes, no = l["ids"]
            chosen = out.sequences[r, prompt_len + s].item()
            raw = out.logits[s][r].float()
            decisions.append(chosen == yes)
            p_true.append(torch.sigmoid(raw[yes] - raw[no]).item())
        results.append((decisions, p_true))
    return results


def load(selector, dtype):
    cfg_path = os.path.join(selector, "kpg_selector.json")
    cfg = json.load(open(cfg_path)) if os.path.exists(cfg_path) else {}
    if not cfg.get("base_model"):
        return LlamaForCausalLM.from_pretrained(selector, dtype=dtype, attn_implementation="sdpa")
    base = os.path.normpath(os.path.join(selector, cfg["base_model"]))
    kwargs = dict(dtype=dtype, attn_implementation="sdpa")
    if base.endswith(".gguf"):
        kwargs["gguf_file"] = os.path.basename(base)
        base = os.path.dirname(base)
    model = LlamaForCausalLM.from_pretrained(base, **kwargs)
    if os.path.exists(os.path.join(selector, "adapter_config.json")):
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, selector).merge_and_unload()
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--selector", required=True)
    ap.add_argument("--programs", required=True)
    ap.add_argument("--batch", type=int, default=64, help="programs per generate call")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    model = load(args.selector, dtype).to(args.device).eval()
    docs = json.load(open(args.programs))
    # One entry per program with labels, remembering its document; sorted by prompt length so
    # that a batch pads little (a user with a batch job would do the same).
    work = [(d, p) for d, doc in enumerate(docs) for p in doc["programs"] if p["labels"]]
    work.sort(key=lambda w: len(w[1]["tokens"]))
    pad_id = 0

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    with torch.inference_mode():
        run_batch(model, [w[1] for w in work[:args.batch]], pad_id, args.device)  # warm-up
        sync()
        start = time.perf_counter()
        per_doc = {}
        for i in range(0, len(work), args.batch):
            chunk = work[i:i + args.batch]
            for (d, _), res in zip(chunk, run_batch(model, [w[1] for w in chunk], pad_id,
                                                    args.device)):
                per_doc.setdefault(d, []).append(res)
        sync()
        secs = time.perf_counter() - start
    agree = total = 0
    max_dp = 0.0
    for d, doc in enumerate(docs):
        decisions = [x for dec, _ in per_doc.get(d, []) for x in dec]
        p_true = [x for _, p in per_doc.get(d, []) for x in p]
        total += len(decisions)
        agree += sum(a == b for a, b in zip(decisions, doc["selected"]))
        max_dp = max([max_dp] + [abs(a - b) for a, b in zip(p_true, doc["p_true"])])
    print(json.dumps({
        "peer": "transformers-batched",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "dtype": args.dtype,
        "attn_implementation": "sdpa",
        "batch": args.batch,
        "docs": len(docs),
        "seconds": round(secs, 3),
        "documents_per_s": round(len(docs) / secs, 3),
        "decisions": total,
        "decisions_agreeing_with_kpg": agree,
        "max_abs_p_true_difference": max_dp,
    }))


if __name__ == "__main__":
    main()
