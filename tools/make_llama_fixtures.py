#!/usr/bin/env python3
"""Golden fixtures for kpg's LLaMA model, from Hugging Face transformers.

Builds tiny random LLaMA models with transformers, saves them in the Hugging Face layout (config,
safetensors, sharded where asked), and records, for a few token sequences, the logits of every
position (teacher forced, computed in float32) and the greedy continuation with the gap between the
top two logits at each step. `tests/llama_golden.rs` replays every directory under
tests/fixtures/llama/ through kpg and compares.

    python3 -m venv ~/venv-kpg && ~/venv-kpg/bin/pip install torch transformers safetensors
    ~/venv-kpg/bin/python tools/make_llama_fixtures.py --out tests/fixtures/llama

`--case NAME` regenerates one case; `--seed`, `--hidden`, ... make models of other shapes for a
one-off check (`--custom DIR`).
"""

import argparse
import json
import math
import os
import shutil

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

# name: (config overrides, storage dtype, config style, shard size or None)
CASES = {
    "mha_f32_v5": (dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=4,
                        num_hidden_layers=2, intermediate_size=96, vocab_size=97),
                   "float32", "v5", None),
    "gqa_headdim_f16_v4": (dict(hidden_size=96, num_attention_heads=6, num_key_value_heads=2,
                                head_dim=24, num_hidden_layers=2, intermediate_size=160,
                                vocab_size=131),
                           "float16", "v4", None),
    "tied_mqa_bf16_v5": (dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=1,
                              num_hidden_layers=3, intermediate_size=128, vocab_size=113,
                              tie_word_embeddings=True),
                         "bfloat16", "v5", None),
    "sharded_gqa_f32_v4": (dict(hidden_size=64, num_attention_heads=8, num_key_value_heads=4,
                                num_hidden_layers=3, intermediate_size=112, vocab_size=89),
                           "float32", "v4", "150KB"),
    "llama3_rope_f32_v4": (dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                                num_hidden_layers=2, intermediate_size=96, vocab_size=101,
                                rope_theta=10000.0,
                                rope_scaling=dict(rope_type="llama3", factor=8.0,
                                                  low_freq_factor=1.0, high_freq_factor=4.0,
                                                  original_max_position_embeddings=512)),
                           "float32", "v4-type", None),
    "llama3_rope_bf16_v5": (dict(hidden_size=128, num_attention_heads=4, num_key_value_heads=4,
                                 num_hidden_layers=2, intermediate_size=200, vocab_size=120,
                                 rope_theta=500000.0,
                                 rope_scaling=dict(rope_type="llama3", factor=4.0,
                                                   low_freq_factor=1.0, high_freq_factor=2.0,
                                                   original_max_position_embeddings=256)),
                            "bfloat16", "v5", None),
    "linear_rope_f16_v5": (dict(hidden_size=64, num_attention_heads=2, num_key_value_heads=2,
                                num_hidden_layers=2, intermediate_size=80, vocab_size=90,
                                rope_scaling=dict(rope_type="linear", factor=2.0)),
                           "float16", "v5", None),
}

# Sequence lengths: 1, odd, and longer than several 16-token KV blocks.
LENGTHS = (1, 7, 45)
MAX_NEW_TOKENS = 12
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def randomise(model, gen):
    """Weights of order one (std 1/sqrt(fan_in); embeddings std 1; norms near 1) so that the
    logits are far from uniform and greedy decoding is not decided by rounding."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))


def to_v4_style(path, type_key):
    """Rewrites a transformers 5.x config.json in the 4.x style of LLaMA-2/3 checkpoints."""
    with open(path) as f:
        cfg = json.load(f)
    params = cfg.pop("rope_parameters", None) or {}
    cfg["rope_theta"] = params.pop("rope_theta", 10000.0)
    kind = params.pop("rope_type", "default")
    cfg["rope_scaling"] = None if kind == "default" else {type_key: kind, **params}
    if "dtype" in cfg:
        cfg["torch_dtype"] = cfg.pop("dtype")
    cfg["transformers_version"] = "4.45.0"
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)


def round7(x):
    return float(f"{x:.7g}")


def make_case(name, overrides, dtype, style, shard, out_dir, seed):
    case_dir = os.path.join(out_dir, name)
    shutil.rmtree(case_dir, ignore_errors=True)
    os.makedirs(case_dir)
    gen = torch.Generator().manual_seed(seed)
    config = LlamaConfig(max_position_embeddings=2048, rms_norm_eps=1e-5, **overrides)
    model = LlamaForCausalLM(config).eval()
    randomise(model, gen)
    model = model.to(DTYPES[dtype])
    kwargs = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(case_dir, safe_serialization=True, **kwargs)
    for extra in ("generation_config.json",):
        if os.path.exists(os.path.join(case_dir, extra)):
            os.remove(os.path.join(case_dir, extra))

    # The reference computes in float32 from the stored (possibly half-precision) weights.
    ref = LlamaForCausalLM.from_pretrained(case_dir, dtype=torch.float32).eval()
    if style.startswith("v4"):
        to_v4_style(os.path.join(case_dir, "config.json"),
                    "type" if style == "v4-type" else "rope_type")

    sequences = []
    for length in LENGTHS:
        ids = torch.randint(3, config.vocab_size, (1, length), generator=gen)
        with torch.no_grad():
            logits = ref(ids).logits[0].float()
            out = ref.generate(ids, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                               output_logits=True, return_dict_in_generate=True,
                               pad_token_id=0)
        new_ids = out.sequences[0, length:].tolist()
        gaps = []
        for step_logits in out.logits:
            top2 = torch.topk(step_logits[0].float(), 2).values
            gaps.append(round7((top2[0] - top2[1]).item()))
        sequences.append({
            "ids": ids[0].tolist(),
            "logits": [[round7(v) for v in row] for row in logits.tolist()],
            "greedy": {"max_new_tokens": MAX_NEW_TOKENS, "ids": new_ids, "top2_gap": gaps},
        })
    golden = {
        "case": name,
        "storage_dtype": dtype,
        "config_style": style,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "eos_token_id": config.eos_token_id,
        "sequences": sequences,
    }
    with open(os.path.join(case_dir, "golden.json"), "w") as f:
        json.dump(golden, f, separators=(",", ":"))
    print(f"{name}: {dtype}, {style}, shards={shard or 1}, vocab={config.vocab_size}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/fixtures/llama")
    ap.add_argument("--case", action="append", help="only these cases")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--custom", help="write one extra model of the shape given below to this name")
    ap.add_argument("--hidden", type=int, default=80)
    ap.add_argument("--heads", type=int, default=5)
    ap.add_argument("--kv-heads", type=int, default=5)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=144)
    ap.add_argument("--vocab", type=int, default=150)
    ap.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    ap.add_argument("--style", default="v5", choices=["v4", "v4-type", "v5"])
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    if args.custom:
        overrides = dict(hidden_size=args.hidden, num_attention_heads=args.heads,
                         num_key_value_heads=args.kv_heads, num_hidden_layers=args.layers,
                         intermediate_size=args.intermediate, vocab_size=args.vocab)
        make_case(args.custom, overrides, args.dtype, args.style, None, args.out, args.seed)
        return
    for i, (name, (overrides, dtype, style, shard)) in enumerate(CASES.items()):
        if args.case and name not in args.case:
            continue
        make_case(name, overrides, dtype, style, shard, args.out, args.seed + i)


if __name__ == "__main__":
    main()
