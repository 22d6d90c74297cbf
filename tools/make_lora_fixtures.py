#!/usr/bin/env python3
"""LoRA adapter fixtures for kpg, from Hugging Face peft.

For each case: a base model from tests/fixtures/llama/ (made by tools/make_llama_fixtures.py),
loaded in float32; a peft LoRA adapter with random A and B (so that it changes the logits), saved
in peft's format (`adapter_config.json`, `adapter_model.safetensors`); and the logits of the base
fixture's sequences with the adapter applied (unmerged, float32), which `tests/lora.rs` replays
through kpg's `--adapter`. Also checked here: peft's merged model gives the same logits.

Needs torch, transformers and peft (the GPU machine's image has all three; the CPU is enough):

    python3 tools/make_lora_fixtures.py --out tests/fixtures/lora
"""

import argparse
import json
import os

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from transformers import LlamaForCausalLM

ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# name: (base fixture, LoraConfig arguments)
CASES = {
    "mha_f32_r4_all": ("mha_f32_v5", dict(r=4, lora_alpha=8, target_modules=ALL)),
    "mqa_bf16_rslora_r8": ("tied_mqa_bf16_v5",
                           dict(r=8, lora_alpha=16, use_rslora=True,
                                target_modules=["q_proj", "v_proj", "down_proj"])),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--bases", default="tests/fixtures/llama")
    a = p.parse_args()
    torch.manual_seed(0)
    for name, (base, lora_args) in CASES.items():
        base_dir = os.path.join(a.bases, base)
        golden = json.load(open(os.path.join(base_dir, "golden.json")))
        model = LlamaForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
        config = LoraConfig(lora_dropout=0.0, bias="none", init_lora_weights=False, **lora_args)
        model = get_peft_model(model, config).eval()
        # Random B as well as A, at a size where the adapter moves the logits visibly but does
        # not drown the base model (B ~ N(0, 0.2) moved them by 40 on logits of RMS 9).
        with torch.no_grad():
            for n, prm in model.named_parameters():
                if "lora_B" in n:
                    prm.normal_(0.0, 0.05)
        out = os.path.join(a.out, name)
        os.makedirs(out, exist_ok=True)
        model.save_pretrained(out)
        # peft writes the adapter under out/ directly for the default adapter.
        sequences = []
        with torch.no_grad():
            for seq in golden["sequences"]:
                ids = torch.tensor([seq["ids"]])
                logits = model(input_ids=ids).logits[0].float()
                base_logits = torch.tensor(seq["logits"])
                sequences.append({
                    "ids": seq["ids"],
                    "logits": [[round(float(x), 7) for x in row] for row in logits],
                    "largest_change_from_base": float((logits - base_logits).abs().max()),
                })
            merged = model.merge_and_unload()
            for seq, s in zip(golden["sequences"], sequences):
                m = merged(input_ids=torch.tensor([seq["ids"]])).logits[0].float()
                diff = float((m - torch.tensor(s["logits"])).abs().max())
                assert diff < 1e-4, f"{name}: merged differs by {diff}"
        json.dump({
            "case": name,
            "base": base,
            "lora": {k: v for k, v in lora_args.items()},
            "peft_version": peft.__version__,
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "sequences": sequences,
        }, open(os.path.join(out, "golden.json"), "w"))
        print(name, "largest change from base:",
              max(s["largest_change_from_base"] for s in sequences), "files:", sorted(os.listdir(out)))


if __name__ == "__main__":
    main()
