#!/usr/bin/env python3
"""Does a selector trained by `kpg train selector` decide the same in transformers + peft?

Independently of kpg's code: the base model is loaded by transformers (a GGUF file through
`gguf_file=`, dequantized; or a Hugging Face directory), the adapter by peft, the prompt rendered
here from kpg_selector.json with the tokenizer's own chat template (`apply_chat_template`), and
each label decided greedily between the two label tokens, feeding the decision back, as the
selector's sequence labelling does. The decisions and P(true) are compared with `kpg select`'s on
the same records.

    python3 tools/check_selector_in_peft.py --selector local/runs/sel1 \
        --input local/selector-data/valid.kp20k.jsonl --records 20 [--kpg target/release/kpg]

Exits 1 when a decision differs. Needs torch, transformers, peft and gguf (CPU is enough).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from selector_prompt import label_positions, render  # noqa: E402


def load(selector):
    cfg = json.load(open(os.path.join(selector, "kpg_selector.json")))
    base = os.path.normpath(os.path.join(selector, cfg["base_model"]))
    if base.endswith(".gguf"):
        d, f = os.path.split(base)
        tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    else:
        tok = AutoTokenizer.from_pretrained(base)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, selector).eval()
    return cfg, tok, model


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--selector", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--records", type=int, default=20)
    p.add_argument("--kpg", default="target/release/kpg")
    a = p.parse_args()
    cfg, tok, model = load(a.selector)
    records = [json.loads(l) for l in open(a.input)][: a.records]
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    out = subprocess.run([a.kpg, "select", "--selector", a.selector, "--input", f.name],
                         check=True, capture_output=True, text=True).stdout
    kpg = [json.loads(l) for l in out.splitlines()]
    yes_label, no_label = cfg["labels"]["true"], cfg["labels"]["false"]
    differ, total, worst = 0, 0, 0.0
    for r, k in zip(records, kpg):
        phrases = [c["phrase"] for c in k["candidates"]]  # in the order kpg showed them
        yes_text, spans = render(cfg, tok, r, phrases, yes_label)
        no_text, _ = render(cfg, tok, r, phrases, no_label)
        ids, pos = label_positions(tok, yes_text, spans)
        no_ids, _ = label_positions(tok, no_text, render(cfg, tok, r, phrases, no_label)[1])
        yes_id, no_id = ids[pos[0]], no_ids[pos[0]]
        with torch.no_grad():
            for i, (slot, c) in enumerate(zip(pos, k["candidates"])):
                logits = model(input_ids=torch.tensor([ids[:slot]])).logits[0, -1]
                p_true = torch.sigmoid(logits[yes_id] - logits[no_id]).item()
                keep = bool(logits[yes_id] > logits[no_id])
                ids[slot] = yes_id if keep else no_id
                total += 1
                worst = max(worst, abs(p_true - c["p_true"]))
                if keep != c["selected"]:
                    differ += 1
                    print(f"{r['id']} candidate {i + 1} `{c['phrase']}`: peft {keep} "
                          f"(P {p_true:.4f}), kpg {c['selected']} (P {c['p_true']:.4f})")
    print(json.dumps({"records": len(records), "decisions": total, "different": differ,
                      "max_p_true_difference": round(worst, 5)}))
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
