#!/usr/bin/env python3
"""A GGUF file of a Hugging Face LLaMA directory, written with llama.cpp's own gguf-py writer and
laid out as llama.cpp's convert_hf_to_gguf.py lays it out (its tensor names, and the per-head row
order it gives q_proj and k_proj for ggml's RoPE), with 2-D weights quantized to Q8_0 by gguf-py (f16 where rows are not whole blocks).
It makes tests/fixtures/gguf/tiny-q8_0.gguf from `kpg synth --arch llama --preset tiny --seed 0`,
which tests/gguf.rs loads both ways and compares:

    kpg synth --arch llama --preset tiny --seed 0 --out /tmp/tiny
    ~/venv-gguf/bin/python tools/make_gguf_model.py /tmp/tiny tests/fixtures/gguf/tiny-q8_0.gguf

With a third argument F, it also writes `rope_freqs.weight` (LLaMA 3.1's per-frequency RoPE
factors, as convert_hf_to_gguf.py writes them) with every factor F: tests/gguf.rs holds
tests/fixtures/gguf/tiny-q8_0-rope-freqs2.gguf to the HF model with linear RoPE scaling of factor 2,
which divides every frequency by 2 just as llama.cpp divides by these factors.

    ~/venv-gguf/bin/python tools/make_gguf_model.py /tmp/tiny tests/fixtures/gguf/tiny-q8_0-rope-freqs2.gguf 2

Needs gguf==0.19.0 and numpy (the safetensors and tokenizer.json files are read by hand).
"""
import json
import struct
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", "an f32 model"
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=np.float32).reshape(info["shape"])
    return out


def permute(w, n_head):
    """convert_hf_to_gguf.py LlamaModel.permute."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def main(src, dst, rope_freqs=None):
    config = json.load(open(f"{src}/config.json"))
    tok = json.load(open(f"{src}/tokenizer.json"))
    weights = read_safetensors(f"{src}/model.safetensors")
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]

    w = gguf.GGUFWriter(dst, "llama")
    w.add_block_count(config["num_hidden_layers"])
    w.add_context_length(config["max_position_embeddings"])
    w.add_embedding_length(config["hidden_size"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_key_length(config["head_dim"])
    w.add_value_length(config["head_dim"])
    w.add_layer_norm_rms_eps(config["rms_norm_eps"])
    w.add_rope_freq_base(config["rope_parameters"]["rope_theta"])
    w.add_vocab_size(config["vocab_size"])

    vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
    assert [i for _, i in vocab] == list(range(len(vocab)))
    specials = {a["id"] for a in tok["added_tokens"] if a["special"]}
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list([t for t, _ in vocab])
    w.add_token_types([3 if i in specials else 1 for i in range(len(vocab))])
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in tok["model"]["merges"]])
    w.add_bos_token_id(config["bos_token_id"])
    w.add_eos_token_id(config["eos_token_id"])
    w.add_add_bos_token(False)

    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    parts = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    for name, t in weights.items():
        if name in names:
            out = names[name]
        else:
            _, _, layer, rest = name.split(".", 3)
            part = rest.rsplit(".", 1)[0]
            out = f"blk.{layer}.{parts[part]}.weight"
            if part == "self_attn.q_proj":
                t = permute(t, heads)
            elif part == "self_attn.k_proj":
                t = permute(t, kv)
        if t.ndim == 2 and t.shape[1] % 32 == 0:
            q = gguf.quants.quantize(np.ascontiguousarray(t), T.Q8_0)
            w.add_tensor(out, q, raw_shape=q.shape, raw_dtype=T.Q8_0)
        elif t.ndim == 2:
            # Rows that are not whole Q8_0 blocks (down_proj's 344): f16, as llama.cpp falls back.
            w.add_tensor(out, np.ascontiguousarray(t).astype(np.float16))
        else:
            w.add_tensor(out, np.ascontiguousarray(t))
    if rope_freqs is not None:
        w.add_tensor("rope_freqs.weight", np.full(config["head_dim"] // 2, rope_freqs, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else None)
