#!/usr/bin/env python3
"""Fixtures for tests/smollm2.rs from llama.cpp itself (llama-cpp-python), the reference for how a
GGUF file tokenises and runs: SmolLM2-135M-Instruct's token ids for hard strings (transformers'
GGUF tokenizer gets SmolLM2's digit splitting wrong, so it is not the reference), and the logits of
every position of one prompt (its top token and margin per position; the last row's 1000 likeliest
tokens), with llama.cpp's greedy continuation.

    tools/fetch-models.sh
    python3 -m venv ~/venv-llama && ~/venv-llama/bin/pip install llama-cpp-python==0.3.36 numpy
    ~/venv-llama/bin/python tools/make_smollm2_fixtures.py > tests/fixtures/gguf/smollm2.json
"""
import json
import sys

import numpy as np
from llama_cpp import Llama

MODEL = "models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
HARD = [
    "Keyphrase generation with optimal transport",
    "digits 1234567890 and 3.14159, years 2024-12-04",
    "  two leading spaces, trailing spaces  ",
    "line\nbreaks\n\nand a final pair\n\n",
    "tabs\tand\r\nCRLF",
    "ünïcödé Ελληνικά 中文 日本語 🙂🚀",
    "<|im_start|>user\nHello<|im_end|>\n",
    "don't won't it's O'Neil's",
    "x" * 40,
]
PROMPT = "Keyphrases of the paper \"Optimal transport for keyphrase generation\":"

vocab = Llama(model_path=MODEL, vocab_only=True, verbose=False)
tokens = [{"text": t, "ids": vocab.tokenize(t.encode(), add_bos=False, special=True)} for t in HARD]

llm = Llama(model_path=MODEL, n_ctx=512, logits_all=True, n_threads=2, verbose=False, seed=0)
ids = llm.tokenize(PROMPT.encode(), add_bos=False, special=True)
llm.eval(ids)
logits = np.array(llm.scores[: len(ids)], dtype=np.float32)
greedy = []
for _ in range(16):
    nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    greedy.append(nxt)
    llm.eval([nxt])

json.dump({
    "made_by": "tools/make_smollm2_fixtures.py",
    "llama_cpp_python": __import__("llama_cpp").__version__,
    "tokens": tokens,
    "prompt": PROMPT,
    "prompt_ids": ids,
    # Per position: llama.cpp's top token and its lead over the second (a near tie is no test).
    "argmax": [int(a) for a in logits.argmax(axis=1)],
    "margin": [float(r[-1] - r[-2]) for r in np.sort(logits, axis=1)],
    # The last row's 1000 likeliest tokens (the whole row is 49152 values) and its largest |logit|.
    "last_top_ids": [int(i) for i in np.argsort(-logits[-1])[:1000]],
    "last_top_logits": [float(logits[-1][i]) for i in np.argsort(-logits[-1])[:1000]],
    "last_max_abs": float(np.abs(logits[-1]).max()),
    "greedy": greedy,
}, sys.stdout)
sys.stdout.write("\n")
