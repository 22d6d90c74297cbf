#!/usr/bin/env python3
"""llama.cpp (llama-cpp-python) on a GGUF file, the CPU peer for kpg's GGUF path: prefill tokens/s
for one prompt of --tokens ids, and decode tokens/s for --decode greedy tokens after it, on
--threads threads, best of --runs. Prints one JSON line. A failure raises (and fails the script).

    ~/venv-llama/bin/python tools/peer_llamacpp.py --model models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import argparse
import json
import time

from llama_cpp import Llama

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--tokens", type=int, default=256)
p.add_argument("--decode", type=int, default=128)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--runs", type=int, default=3)
a = p.parse_args()

llm = Llama(model_path=a.model, n_ctx=a.tokens + a.decode + 8, n_threads=a.threads,
            n_threads_batch=a.threads, n_batch=512, verbose=False)
prompt = [100 + i for i in range(a.tokens)]
best_prefill, best_decode = 0.0, 0.0
for _ in range(a.runs):
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(prompt)
    t1 = time.perf_counter()
    nxt = 100
    for _ in range(a.decode):
        llm.eval([nxt])
    t2 = time.perf_counter()
    best_prefill = max(best_prefill, a.tokens / (t1 - t0))
    best_decode = max(best_decode, a.decode / (t2 - t1))
print(json.dumps({"peer": "llama.cpp", "version": __import__("llama_cpp").__version__,
                  "model": a.model, "threads": a.threads, "prefill_tokens": a.tokens,
                  "prefill_tokens_per_s": best_prefill, "decode_tokens": a.decode,
                  "decode_tokens_per_s": best_decode}))
