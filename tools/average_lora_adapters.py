#!/usr/bin/env python3
"""Average LoRA adapters of one base model in weight space, exactly, as one adapter.

Each adapter i adds ΔW_i = s_i · B_i · A_i to a module's weight (s_i = lora_alpha / r, or
lora_alpha / √r under rsLoRA, as peft computes it). The weighted average Σ w_i ΔW_i is itself a
LoRA update of rank Σ r_i: stack the A_i (each scaled by w_i · s_i) as rows and the B_i as
columns, and set lora_alpha = r so that the scale is 1. No SVD, no truncation: the result adds
exactly the average of the updates, at the cost of a larger rank (r 8 + r 8 → r 16, a few more
multiply-adds a token).

    python3 tools/average_lora_adapters.py --out local/sel-avg \
        checkpoints/selector-smollm2-r8-mixed:0.25 checkpoints/selector-smollm2-r8-redundant6:0.75

The output directory gets adapter_config.json (the first adapter's, with r, lora_alpha and
use_rslora changed) and adapter_model.safetensors; the first adapter's kpg_selector.json is
copied when there is one (its base_model re-pointed from the new directory). Needs numpy and safetensors.
"""

import argparse
import json
import math
import os

import numpy as np
from safetensors.numpy import load_file, save_file


def scale(cfg):
    r, alpha = cfg["r"], cfg["lora_alpha"]
    return alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("adapters", nargs="+", help="DIR:WEIGHT, the weights summing to 1 for an average")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    dirs, weights = [], []
    for spec in a.adapters:
        d, _, w = spec.rpartition(":")
        try:
            weights.append(float(w))
        except ValueError:
            raise SystemExit(f"{spec}: expected DIR:WEIGHT, WEIGHT a number") from None
        if not d:
            raise SystemExit(f"{spec}: expected DIR:WEIGHT")
        dirs.append(d)
    cfgs = [json.load(open(os.path.join(d, "adapter_config.json"))) for d in dirs]
    tensors = [load_file(os.path.join(d, "adapter_model.safetensors")) for d in dirs]
    for d, cfg, t in zip(dirs[1:], cfgs[1:], tensors[1:]):
        if sorted(cfg["target_modules"]) != sorted(cfgs[0]["target_modules"]):
            raise SystemExit(f"{d}: target_modules differ from {dirs[0]}'s")
        if set(t) != set(tensors[0]):
            raise SystemExit(f"{d}: its tensors are not {dirs[0]}'s")
    for d, cfg in zip(dirs, cfgs):
        if cfg.get("rank_pattern") or cfg.get("alpha_pattern") or cfg.get("use_dora"):
            raise SystemExit(f"{d}: rank_pattern, alpha_pattern and DoRA are not supported")
    out = {}
    for name in sorted(tensors[0]):
        if ".lora_A." in name:
            # A: [r_i, in] each → [Σ r_i, in], row block i scaled by w_i · s_i.
            out[name] = np.concatenate(
                [w * scale(c) * t[name].astype(np.float32) for w, c, t in zip(weights, cfgs, tensors)])
        elif ".lora_B." in name:
            # B: [out, r_i] each → [out, Σ r_i].
            out[name] = np.concatenate([t[name].astype(np.float32) for t in tensors], axis=1)
        else:
            raise SystemExit(f"{dirs[0]}: tensor {name} is neither lora_A nor lora_B")
    rank = sum(c["r"] for c in cfgs)
    cfg = dict(cfgs[0], r=rank, lora_alpha=float(rank), use_rslora=False)
    os.makedirs(a.out, exist_ok=True)
    save_file(out, os.path.join(a.out, "adapter_model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(a.out, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    sel = os.path.join(dirs[0], "kpg_selector.json")
    if os.path.exists(sel):
        # base_model is relative to the selector directory: point it there from the new one.
        sel_cfg = json.load(open(sel))
        base = sel_cfg.get("base_model")
        if base and not os.path.isabs(base):
            sel_cfg["base_model"] = os.path.relpath(os.path.join(dirs[0], base), a.out)
        with open(os.path.join(a.out, "kpg_selector.json"), "w") as f:
            json.dump(sel_cfg, f, indent=2, ensure_ascii=False)
            f.write("\n")
    print(f"{a.out}: rank {rank}, {len(out)} tensors, weights {weights}")


if __name__ == "__main__":
    main()
