#!/usr/bin/env python3
"""Dequantization fixtures for src/gguf/dequant.rs: random blocks of every block type kpg reads,
with what the `gguf` Python package (llama.cpp's gguf-py) dequantizes them to.

    python3 -m venv ~/venv-gguf && ~/venv-gguf/bin/pip install gguf==0.19.0 numpy
    ~/venv-gguf/bin/python tools/make_gguf_fixtures.py > tests/fixtures/gguf/dequant.json

Blocks are random bytes except their f16 scale fields, which are set to finite values of either
sign (random bytes would make some of them NaN or infinite, which tests nothing).
"""
import json
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

# Byte offsets of each block type's f16 fields.
HALF_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
BLOCKS = 5

rng = np.random.RandomState(17)
out = {"made_by": "tools/make_gguf_fixtures.py", "gguf_version": gguf.__version__ if hasattr(gguf, "__version__") else "0.19.0", "types": {}}
for qtype, fields in HALF_FIELDS.items():
    per_block, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    blocks = rng.randint(0, 256, size=(BLOCKS, block_bytes), dtype=np.uint16).astype(np.uint8)
    for at in fields:
        halves = (rng.uniform(-2.0, 2.0, size=BLOCKS) * (10.0 ** rng.randint(-3, 2, size=BLOCKS))).astype(np.float16)
        blocks[:, at:at + 2] = halves.view(np.uint8).reshape(BLOCKS, 2)
    values = gguf.quants.dequantize(blocks.reshape(-1), qtype).astype(np.float32).reshape(-1)
    assert values.size == BLOCKS * per_block and np.isfinite(values).all()
    out["types"][qtype.name] = {
        "blocks_hex": blocks.tobytes().hex(),
        # f32 values written as the doubles they are: exact.
        "values": [float(v) for v in values],
    }
json.dump(out, sys.stdout)
sys.stdout.write("\n")
