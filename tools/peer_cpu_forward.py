#!/usr/bin/env python3
"""The transformers peer of `cargo bench -p kpg-extras --bench cpu_forward`: the same synth model, the same
prompt, float32 on the CPU, with as many threads as kpg uses (all cores).

    cargo bench -p kpg-extras --bench cpu_forward            # writes target/bench-models/small-f32 on first use
    python tools/peer_cpu_forward.py --model target/bench-models/small-f32

Prints one JSON line: prefill tokens/s (one PROMPT-token forward) and decode tokens/s (DECODE_STEPS
single-token steps over the KV cache after the prompt), medians over --repeats runs.
"""

import argparse
import json
import os
import statistics
import time

import torch
import transformers
from transformers import LlamaForCausalLM

PROMPT = 128
DECODE_STEPS = 32


def prompt_ids(vocab, n):
    # Same ids as benches/cpu_forward.rs.
    return [3 + (i * 7) % (vocab - 3) for i in range(n)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = LlamaForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    ids = torch.tensor([prompt_ids(model.config.vocab_size, PROMPT)])

    def prefill():
        return model(ids, use_cache=True, logits_to_keep=1)

    with torch.inference_mode():
        for _ in range(2):
            prefill()
        prefill_times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            prefill()
            prefill_times.append(time.perf_counter() - t)

        decode_times = []
        for r in range(args.repeats + 1):
            out = prefill()
            past = out.past_key_values
            t = time.perf_counter()
            for step in range(DECODE_STEPS):
                tok = ids[:, step:step + 1]
                out = model(tok, past_key_values=past, use_cache=True)
                past = out.past_key_values
            if r > 0:  # the first run warms up
                decode_times.append(time.perf_counter() - t)

    p, d = statistics.median(prefill_times), statistics.median(decode_times)
    print(json.dumps({
        "peer": "transformers",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "threads": args.threads,
        "model": args.model,
        "prefill_tokens": PROMPT,
        "prefill_s": round(p, 5),
        "prefill_tokens_per_s": round(PROMPT / p, 1),
        "decode_steps": DECODE_STEPS,
        "decode_s": round(d, 5),
        "decode_tokens_per_s": round(DECODE_STEPS / d, 1),
    }))


if __name__ == "__main__":
    main()
