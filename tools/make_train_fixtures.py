#!/usr/bin/env python3
"""Writes tests/fixtures/train/: a tiny random One2Set generator (model/config.json,
model/model.safetensors, f32), a teacher-forced batch with targets and weights (batch.json), and
what PyTorch computes for it in float64 with dropout off (tools/one2set_train_reference.py): the
loss, every gradient (grads.safetensors, `grad.<name>`, f64), and two torch.optim.Adam steps with
the reference settings from those gradients (`adam.<name>`, f32) and their clip_grad_norm_ norm.

    /work/venv/bin/python tools/make_train_fixtures.py
"""

import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_one2set_fixtures import tensor_specs as specs  # noqa: E402
from one2set_train_reference import train_loss  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "train")

CFG = {"architecture": "one2set", "vocab_size": 30, "d_model": 16, "num_heads": 2, "ffn_dim": 32,
       "encoder_layers": 2, "decoder_layers": 2, "num_control_codes": 4, "num_present_codes": 2,
       "max_keyphrase_len": 6, "max_source_len": 16, "layer_norm_eps": 1e-5, "dtype": "float32"}


def main():
    rng = np.random.default_rng(20240607)
    weights = {}
    for name, shape in specs(CFG):
        if "layer_norm" in name:
            base = 1.0 if name.endswith(".weight") else 0.0
            v = base + 0.2 * rng.standard_normal(shape)
        elif name in ("embed.weight", "decoder.control_code.weight"):
            v = 0.5 * rng.standard_normal(shape)
        else:
            v = rng.uniform(-1, 1, shape) * np.sqrt(3.0 / shape[-1]) * 1.5
        weights[name] = torch.tensor(v, dtype=torch.float32)

    # Two documents (7 and 4 tokens) with OOV words (ext ids 30, 31), 3 decoder steps per slot.
    N, steps = CFG["num_control_codes"], 3
    batch = {
        "src": [9, 12, 1, 9, 20, 1, 14, 15, 1, 8, 22],
        "doc_lens": [7, 4],
        "src_ext": [9, 12, 30, 9, 20, 31, 14, 15, 30, 8, 22],
        "num_oov": [2, 1],
        "steps": steps,
        # Per slot: <bos> + target shifted right (OOV as <unk>); null targets <null> <pad>.
        "dec_in": [2, 9, 1, 2, 20, 1, 2, 6, 0, 2, 14, 3,
                   2, 15, 1, 2, 8, 22, 2, 6, 0, 2, 6, 0],
        "targets": [9, 30, 3, 20, 31, 3, 6, 0, 0, 14, 3, 0,
                    15, 30, 3, 8, 22, 3, 6, 0, 0, 6, 0, 0],
        "weights": [1, 1, 1, 1, 1, 1, 0.2, 0.2, 0, 1, 1, 0,
                    1, 1, 1, 1, 1, 1, 0.1, 0.1, 0, 0.1, 0.1, 0],
        "normalizer": 17.0,
    }
    assert len(batch["dec_in"]) == len(batch["targets"]) == 2 * N * steps

    w64 = {k: v.double().requires_grad_(True) for k, v in weights.items()}
    loss = train_loss(w64, CFG, batch)
    loss.backward()
    grads = {f"grad.{k}": v.grad.detach().clone() for k, v in w64.items()}

    # Two Adam steps (reference settings) from the f32 gradients, after clipping at norm 1.
    params = {k: v.clone().requires_grad_(True) for k, v in weights.items()}
    opt = torch.optim.Adam(list(params.values()), lr=1e-4, betas=(0.9, 0.998), eps=1e-9)
    for k, p in params.items():
        p.grad = w64[k].grad.float().clone()
    norm = torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
    opt.step()
    opt.step()
    adam = {f"adam.{k}": v.detach().clone() for k, v in params.items()}

    os.makedirs(os.path.join(OUT, "model"), exist_ok=True)
    with open(os.path.join(OUT, "model", "config.json"), "w") as f:
        json.dump(CFG, f, indent=1)
    save_file(weights, os.path.join(OUT, "model", "model.safetensors"))
    save_file(grads, os.path.join(OUT, "grads.safetensors"), metadata={"torch": torch.__version__})
    save_file(adam, os.path.join(OUT, "adam.safetensors"), metadata={"torch": torch.__version__})
    meta = dict(batch, loss=loss.item(), grad_norm=float(norm), clip_max_norm=1.0, adam_steps=2,
                adam={"lr": 1e-4, "betas": [0.9, 0.998], "eps": 1e-9}, torch=torch.__version__,
                generator="tools/make_train_fixtures.py")
    with open(os.path.join(OUT, "batch.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"loss {loss.item():.6f}, grad norm {float(norm):.4f}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
