#!/usr/bin/env python3
"""Writes the seed corpus of tests/fuzz.rs (tests/fuzz-corpus/): small, valid examples of every
format kpg parses from users (JSON-lines records, plain and gzip; safetensors files; config.json
of each model kind; GGUF files), which the fuzz test mutates. Standard library only; the files are
committed, so rerun this only to change the seeds:

    python3 tools/make_fuzz_corpus.py
"""
import gzip
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fuzz-corpus")


def write(kind, name, data):
    os.makedirs(os.path.join(ROOT, kind), exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(os.path.join(ROOT, kind, name), mode) as f:
        f.write(data)


# --- records: every command's input shape, ids of each kind, a BOM, CRLF, blank lines.
records = [
    {"id": "d1", "title": "Graph neural networks", "abstract": "Message passing on graphs."},
    {"id": 7, "title": "", "abstract": "Only an abstract, with a number 42."},
    {"id": 123456789012345678901234567890, "title": "Big id", "abstract": "x"},
    {"id": "c", "title": "t", "abstract": "a",
     "candidates": [{"phrase": "graph", "score": 0.9}, {"phrase": "network", "score": None}]},
    {"id": "k", "title": "t", "abstract": "a", "keyphrases": ["graph", "neural network"]},
]
lines = "\n".join(json.dumps(r) for r in records) + "\n"
write("records", "plain.jsonl", lines)
write("records", "bom_crlf.jsonl", "\ufeff" + lines.replace("\n", "\r\n\r\n"))
write("records", "gzip.jsonl.gz", gzip.compress(lines.encode(), mtime=0))
write("records", "odd.jsonl", '{"id": null}\n[1]\n"text"\n{"id": [1], "title": 5}\n{"id": "\\u0041"}\n')


# --- safetensors: three small tensors, one per dtype kpg reads.
def safetensors(tensors):
    header, data = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


write("safetensors", "three_dtypes.safetensors", safetensors([
    ("a.weight", "F32", [2, 3], struct.pack("<6f", 1, -2, 3.5, 0, 1e-3, 7)),
    ("b.weight", "F16", [4], struct.pack("<4e", 1, 2, -3, 0.5)),
    ("c.bias", "BF16", [2], bytes([0x80, 0x3f, 0x00, 0x40])),
]))
write("safetensors", "empty_tensor.safetensors", safetensors([("e", "F32", [0, 4], b"")]))

# --- config.json: a LLaMA one (transformers 5.x style), a LLaMA 3 one (4.x style with
# rope_scaling), a One2Set one, a selector template.
write("config", "llama.json", json.dumps({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 128,
    "intermediate_size": 344, "num_hidden_layers": 4, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 1024, "rms_norm_eps": 1e-5,
    "max_position_embeddings": 4096, "bos_token_id": 1, "eos_token_id": 2,
    "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
    "tie_word_embeddings": False}, indent=1))
write("config", "llama3.json", json.dumps({
    "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 1, "vocab_size": 300, "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0, "eos_token_id": [5, 6], "torch_dtype": "bfloat16",
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}, indent=1))
write("config", "one2set.json", json.dumps({
    "architecture": "one2set", "d_model": 64, "decoder_layers": 2, "dtype": "float32",
    "encoder_layers": 2, "ffn_dim": 128, "layer_norm_eps": 1e-5, "max_keyphrase_len": 6,
    "max_source_len": 512, "num_control_codes": 20, "num_heads": 4, "num_present_codes": 10,
    "vocab_size": 1000}, indent=1))
write("config", "kpg_selector.json", json.dumps({
    "instruction": "Select keyphrases.\n", "document": "Title: {title}\nAbstract: {abstract}\n",
    "candidates_header": "Candidates:\n", "candidate": "{n}. {phrase}\n", "answer_prefix": "Answer:",
    "answer_item": " {label}", "labels": {"yes": "T", "no": "F"},
    "rerank_query": "Is \"{phrase}\" a keyphrase? {label}"}, indent=1))


# --- GGUF (version 3): llama metadata, a tokenizer array, tensors of several types.
def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_value(kind, v):
    if kind == 4:
        return struct.pack("<I", v)
    if kind == 6:
        return struct.pack("<f", v)
    if kind == 8:
        return gguf_string(v)
    if kind == 7:
        return struct.pack("<B", v)
    raise ValueError(kind)


def gguf(metadata, tensors):
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata))
    for key, kind, v in metadata:
        out += gguf_string(key) + struct.pack("<I", kind)
        if kind == 9:
            item, items = v
            out += struct.pack("<IQ", item, len(items)) + b"".join(gguf_value(item, x) for x in items)
        else:
            out += gguf_value(kind, v)
    blocks = {0: (1, 4), 1: (1, 2), 3: (32, 20), 8: (32, 34), 12: (256, 144), 30: (1, 2)}
    offset, end = 0, 0
    for name, dims, kind in tensors:
        out += gguf_string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", kind, offset)
        per, size = blocks[kind]
        n = dims[0] // per * size
        for d in dims[1:]:
            n *= d
        end = offset + n
        offset += -(-n // 32) * 32
    out += b"\0" * (-len(out) % 32)
    return out + bytes((i * 37) % 251 for i in range(end))


write("gguf", "llama.gguf", gguf(
    [("general.architecture", 8, "llama"), ("general.alignment", 4, 32),
     ("llama.block_count", 4, 1), ("llama.embedding_length", 4, 256),
     ("llama.attention.layer_norm_rms_epsilon", 6, 1e-5), ("tokenizer.ggml.model", 8, "gpt2"),
     ("tokenizer.ggml.pre", 8, "smollm"), ("tokenizer.ggml.add_bos_token", 7, 0),
     ("tokenizer.ggml.tokens", 9, (8, ["<|endoftext|>", "a", "b", "ab", "\u0120c"])),
     ("tokenizer.ggml.token_type", 9, (4, [3, 1, 1, 1, 1]))],
    [("token_embd.weight", [256, 5], 3), ("blk.0.attn_q.weight", [256, 2], 8),
     ("blk.0.ffn_down.weight", [256, 1], 12), ("output_norm.weight", [256], 0),
     ("blk.0.attn_norm.weight", [256], 30), ("rope_freqs.weight", [16], 1)]))
write("gguf", "empty.gguf", gguf([], []))
