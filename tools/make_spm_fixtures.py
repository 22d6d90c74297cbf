#!/usr/bin/env python3
"""A SentencePiece-style (LLaMA 1/2, Mistral, TinyLlama) GGUF vocabulary and llama.cpp's own token
ids for hard strings with it, for tests/gguf.rs: tests/fixtures/gguf/spm-vocab.gguf (written with
gguf-py; vocabulary only, no tensors) and tests/fixtures/gguf/spm-tokens.json (llama-cpp-python,
vocab_only). The vocabulary: the 256 byte tokens, <unk> <s> </s>, and every prefix of a list of
words with and without the word-start mark, scored so that longer pieces merge later, and every
character of those words.

    ~/venv-llama/bin/pip install llama-cpp-python==0.3.36 gguf==0.19.0 numpy
    ~/venv-llama/bin/python tools/make_spm_fixtures.py tests/fixtures/gguf
"""
import json
import os
import sys

import gguf
from llama_cpp import Llama

out_dir = sys.argv[1]
WORDS = ("keyphrase generation optimal transport set sets language model models large the of and "
         "with for in a an to is it graph neural network networks attention sinkhorn paper digit "
         "über naïve café").split()

pieces = {}  # piece -> score
def add(piece, score):
    if piece not in pieces or pieces[piece] < score:
        pieces[piece] = score

for w in WORDS:
    for form in ("\u2581" + w, w):
        for end in range(1, len(form) + 1):
            # Shorter prefixes score higher: they merge first, as in a trained model.
            add(form[:end], -float(end) - 0.001 * len(pieces))
# Every character of the words is a piece, as SentencePiece's character coverage makes it (rare
# characters only are left to the byte tokens); then digits and punctuation.
for c in sorted(set("".join(WORDS))) + list("0123456789.,:;!?'\"()-"):
    add(c, -100.0)
add("\u2581", -0.5)

tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
types = [2, 3, 3] + [6] * 256
scores = [0.0, 0.0, 0.0] + [0.0] * 256
for piece, score in sorted(pieces.items(), key=lambda kv: -kv[1]):
    tokens.append(piece)
    types.append(1)
    scores.append(score)

path = os.path.join(out_dir, "spm-vocab.gguf")
w = gguf.GGUFWriter(path, "llama")
w.add_block_count(1)
w.add_context_length(64)
w.add_embedding_length(8)
w.add_feed_forward_length(8)
w.add_head_count(1)
w.add_layer_norm_rms_eps(1e-5)
w.add_tokenizer_model("llama")
w.add_token_list(tokens)
w.add_token_scores(scores)
w.add_token_types(types)
w.add_unk_token_id(0)
w.add_bos_token_id(1)
w.add_eos_token_id(2)
w.add_add_bos_token(True)
w.add_add_space_prefix(True)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()

HARD = [
    "keyphrase generation with optimal transport",
    "Keyphrase Generation",  # capitals fall back to bytes
    "  two leading spaces and  double  spaces ",
    "digits 2024 and 3.14",
    "line\nbreaks\n\nand tabs\t!",
    "über naïve café 中文 🙂",
    "<s>special</s> tokens",
    "",
]
llm = Llama(model_path=path, vocab_only=True, verbose=False)
cases = [{"text": t, "ids": llm.tokenize(t.encode(), add_bos=True, special=True)} for t in HARD]
with open(os.path.join(out_dir, "spm-tokens.json"), "w") as f:
    json.dump({"made_by": "tools/make_spm_fixtures.py",
               "llama_cpp_python": __import__("llama_cpp").__version__, "cases": cases}, f, indent=1)
    f.write("\n")
print(f"{len(tokens)} tokens; wrote {path} and spm-tokens.json", file=sys.stderr)
