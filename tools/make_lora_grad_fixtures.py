#!/usr/bin/env python3
"""Gradient fixtures for `kpg train selector`, from PyTorch + peft.

For each adapter of tests/fixtures/lora/ (made by tools/make_lora_fixtures.py, random A and B),
loaded by peft onto its float32 base: one teacher-forced sequence, the weighted cross-entropy
`sum_i w_i * CE(logits[rows[i]], targets[i])` at a few rows (the selector's loss on its label
tokens, with class-balanced weights), and the gradient of that loss at every lora_A and lora_B.
`tests/select_train.rs` replays the sequence through kpg's training model and holds its loss and
gradients to these.

Needs torch, transformers and peft (CPU is enough):

    python3 tools/make_lora_grad_fixtures.py --lora tests/fixtures/lora --bases tests/fixtures/llama
"""

import argparse
import json
import os

import peft
import torch
import transformers
from peft import PeftModel
from transformers import LlamaForCausalLM

CASES = ["mha_f32_r4_all", "mqa_bf16_rslora_r8"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--lora", default="tests/fixtures/lora")
    p.add_argument("--bases", default="tests/fixtures/llama")
    a = p.parse_args()
    gen = torch.Generator().manual_seed(7)
    for case in CASES:
        adapter = os.path.join(a.lora, case)
        golden = json.load(open(os.path.join(adapter, "golden.json")))
        base_dir = os.path.join(a.bases, golden["base"])
        base = LlamaForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        model = PeftModel.from_pretrained(base, adapter, is_trainable=True).train()
        vocab = base.config.vocab_size
        ids = torch.randint(0, vocab, (1, 23), generator=gen)
        rows = [4, 9, 15, 22]
        targets = torch.randint(0, vocab, (len(rows),), generator=gen)
        # Two classes as the selector's labels: 3 of one, 1 of the other, balanced to 1/2 each.
        weights = torch.tensor([0.5 / 3, 0.5 / 3, 0.5, 0.5 / 3], dtype=torch.float32)
        logits = model(input_ids=ids).logits[0]
        ce = torch.nn.functional.cross_entropy(logits[rows], targets, reduction="none")
        loss = (weights * ce).sum()
        loss.backward()
        grads = {}
        for name, prm in model.named_parameters():
            if "lora_" in name:
                key = name.replace(".default", "")
                grads[key] = prm.grad.reshape(-1).tolist()
        out = {
            "case": case,
            "peft_version": peft.__version__,
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "ids": ids[0].tolist(),
            "rows": rows,
            "targets": targets.tolist(),
            "weights": weights.tolist(),
            "loss": loss.item(),
            "grads": grads,
        }
        with open(os.path.join(adapter, "grad.json"), "w") as f:
            json.dump(out, f)
        print(case, "loss", loss.item(), len(grads), "matrices")


if __name__ == "__main__":
    main()
