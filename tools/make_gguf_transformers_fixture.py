#!/usr/bin/env python3
"""transformers' own reading of a GGUF file, for kpg's dequantized path: transformers loads
tests/fixtures/gguf/tiny-q8_0.gguf (`from_pretrained(..., gguf_file=...)`, which dequantizes with
gguf-py and undoes llama.cpp's q/k row order), and this records its float32 logits for a few id
sequences. tests/gguf.rs holds `kpg --gguf-weights f32 debug logits` to them within 1e-4 of the
largest logit (issue 15's bound for the dequantized path).

    python3 tools/make_gguf_transformers_fixture.py tests/fixtures/gguf tiny-q8_0.gguf \
        tests/fixtures/gguf/tiny-q8_0-transformers.json

Needs torch, transformers and gguf (the GPU machine's image has the first two; gguf travels as a
wheel). The CPU is enough.
"""
import json
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM

SEQUENCES = [[1, 5, 9, 300, 77, 1000, 2, 640], [7], list(range(40, 73))]


def main(folder, name, out):
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    rows = []
    with torch.no_grad():
        for ids in SEQUENCES:
            logits = model(input_ids=torch.tensor([ids])).logits[0].float()
            rows.append({"ids": ids, "logits": [[round(float(x), 7) for x in r] for r in logits]})
    json.dump({"file": name, "transformers_version": transformers.__version__,
               "torch_version": torch.__version__, "sequences": rows}, open(out, "w"))
    print("wrote", out, [len(s["ids"]) for s in rows])


if __name__ == "__main__":
    main(*sys.argv[1:4])
