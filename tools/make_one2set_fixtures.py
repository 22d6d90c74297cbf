#!/usr/bin/env python3
"""Golden fixtures for kpg's One2Set generator, from the PyTorch reference (tools/one2set_reference.py).

For each case, writes tests/fixtures/one2set/<case>/ with a tiny random generator in kpg's
directory format (config.json, model.safetensors with the tensor names documented in
src/model/one2set.rs, a word-level tokenizer.json), the input documents (docs.jsonl), and
golden.json: per document its source tokens, every slot's greedy tokens (extended-vocabulary ids,
up to the first <eos>/<null>), their probabilities under the copy-augmented distribution, the gap
between the top two probabilities at each step, the most-attended source position, and the final
candidates. `tests/one2set_golden.rs` holds kpg to them.

The model is built here, not by `kpg synth`, so that the tensor names and shapes are checked from
both sides. Its output rows for <eos>, <null> and <unk> are scaled up so that the few documents
exercise every path: slots giving <null>, phrases ended by <eos> and phrases of full length,
<unk> replaced from the source, out-of-vocabulary words copied, duplicates merged.

    /work/venv/bin/python tools/make_one2set_fixtures.py [--out tests/fixtures/one2set]
"""

import argparse
import collections
import json
import math
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import one2set_reference as ref_mod  # noqa: E402
from one2set_reference import EOS, NULL, UNK, SPECIAL_TOKENS, One2SetReference, source_tokens  # noqa: E402

VERSION = 1

DOCS = [
    {"id": "193", "title": "Twenty years of the literature on acquiring out-of-print materials",
     "abstract": "This article reviews the last two-and-a-half decades of literature on acquiring "
                 "out-of-print materials to assess recurring issues and identify changing practices. "
                 "The out-of-print literature is uniform in its assertion that libraries need to "
                 "acquire o.p. materials to replace worn or damaged copies."},
    {"id": "1930", "title": "A new method of systemological analysis coordinated with the procedure "
                            "of object-oriented design. II",
     "abstract": "For pt.I. see Vestn. KhGPU, no.81, p.15-18 (2000). The paper presents the results "
                 "of development of an object-oriented systemological method used to design complex "
                 "systems."},
    {"id": 7, "title": "", "abstract": "Keyphrase generation with a <unk> copy mechanism: keyphrase "
                                       "sets, control codes and optimal transport for keyphrase sets."},
    {"id": "short", "title": "Sets", "abstract": "Sets."},
    {"id": "long", "title": "Parallel decoding of keyphrase sets",
     "abstract": " ".join(["The decoder attends to the encoder output of the document, and every "
                           "control code decodes one keyphrase in parallel with the others."] * 4)},
    {"id": "numbers", "title": "Wireless sensor networks in 2004",
     "abstract": "We measure 802.11b links at 2.4 GHz over 30 days; energy use drops by 40 percent "
                 "with adaptive duty cycles in wireless sensor networks."},
]

# name: (config, storage dtype, tokenizer words (total, specials included), seed)
CASES = {
    "tiny_f32": (dict(d_model=32, num_heads=4, ffn_dim=48, encoder_layers=2, decoder_layers=2,
                      num_control_codes=8, num_present_codes=4, max_keyphrase_len=6,
                      max_source_len=40, vocab_size=30),
                 "float32", 30, 15),
    # Odd head_dim (12 / 3 heads), more decoder than encoder layers, short phrases, bf16 weights,
    # and a tokenizer larger than vocab_size (its last words are out of the model's vocabulary).
    "odd_bf16": (dict(d_model=36, num_heads=3, ffn_dim=50, encoder_layers=1, decoder_layers=3,
                      num_control_codes=6, num_present_codes=2, max_keyphrase_len=4,
                      max_source_len=64, vocab_size=25),
                 "bfloat16", 40, 8),
}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def tensor_specs(c):
    """The tensor table of src/model/one2set.rs, written out independently."""
    d, f, V = c["d_model"], c["ffn_dim"], c["vocab_size"]
    out = [("embed.weight", [V, d])]

    def linear(name, o, i):
        out.extend([(name + ".weight", [o, i]), (name + ".bias", [o])])

    def norm(name):
        out.extend([(name + ".weight", [d]), (name + ".bias", [d])])

    linear("encoder.input_fc", d, d)
    for i in range(c["encoder_layers"]):
        p = f"encoder.layer_stacks.{i}"
        for proj in "q k v out".split():
            linear(f"{p}.self_attn.{proj}_proj", d, d)
        norm(p + ".attn_layer_norm")
        norm(p + ".ffn_layer_norm")
        linear(p + ".ffn.0", f, d)
        linear(p + ".ffn.3", d, f)
    norm("encoder.layer_norm")
    linear("decoder.input_fc", d, d)
    out.append(("decoder.control_code.weight", [c["num_control_codes"], d]))
    for i in range(c["decoder_layers"]):
        p = f"decoder.layer_stacks.{i}"
        for attn in ("self_attn", "encoder_attn"):
            for proj in "q k v out".split():
                linear(f"{p}.{attn}.{proj}_proj", d, d)
        for n in ("self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm"):
            norm(f"{p}.{n}")
        linear(p + ".ffn.0", f, d)
        linear(p + ".ffn.3", d, f)
    norm("decoder.layer_norm")
    linear("decoder.output_fc", d, d)
    out.append(("decoder.output_layer.weight", [V, d]))
    linear("decoder.p_gen_linear", 1, d)
    return out


def random_tensors(c, gen):
    w = {}
    for name, shape in tensor_specs(c):
        if name == "embed.weight":
            t = torch.empty(shape).uniform_(-0.1, 0.1, generator=gen)
        elif name == "decoder.control_code.weight":
            t = torch.randn(shape, generator=gen)
        elif name.endswith(".bias"):
            t = 0.1 * torch.randn(shape, generator=gen)
        elif len(shape) == 1:
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        else:
            t = torch.randn(shape, generator=gen) / math.sqrt(shape[1])
        w[name] = t
    # Make <eos>, <null> and <unk> win some steps.
    out = w["decoder.output_layer.weight"]
    out *= OUTPUT_SCALE
    for tok, scale in SPECIAL_SCALE:
        out[tok] *= scale
    # Copy about as often as generate: a sharp copy attention (head 0 of the last layer's
    # cross-attention) and a p_gen that leans to copying.
    last = c["decoder_layers"] - 1
    hd = c["d_model"] // c["num_heads"]
    w[f"decoder.layer_stacks.{last}.encoder_attn.q_proj.weight"][:hd] *= COPY_SHARPNESS
    w["decoder.p_gen_linear.bias"].fill_(P_GEN_BIAS)
    return w


OUTPUT_SCALE = float(os.environ.get("FX_OUT", "0.5"))
SPECIAL_SCALE = ((EOS, float(os.environ.get("FX_EOS", "6"))), (NULL, float(os.environ.get("FX_NULL", "5"))),
                 (UNK, float(os.environ.get("FX_UNK", "3"))))
COPY_SHARPNESS = float(os.environ.get("FX_SHARP", "4"))
P_GEN_BIAS = float(os.environ.get("FX_PGEN", "-0.5"))


def build_vocab(size):
    """kpg vocab over the fixture documents: specials, then words by frequency, ties by first
    appearance."""
    counts = collections.Counter()
    for d in DOCS:
        counts.update(source_tokens(d["title"], d["abstract"]))
    for s in SPECIAL_TOKENS:
        counts.pop(s, None)
    words = SPECIAL_TOKENS + [w for w, _ in sorted(counts.items(), key=lambda x: -x[1])]
    return words[:size]


def write_tokenizer(path, words):
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, t in enumerate(SPECIAL_TOKENS)]
    doc = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
           "normalizer": None, "pre_tokenizer": {"type": "WhitespaceSplit"}, "post_processor": None,
           "decoder": None,
           "model": {"type": "WordLevel", "vocab": {w: i for i, w in enumerate(words)}, "unk_token": "<unk>"}}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f)


def make_case(out_dir, name):
    from nltk.stem.porter import PorterStemmer

    cfg, dtype, n_words, seed = CASES[name]
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    config = dict(architecture="one2set", layer_norm_eps=1e-5, dtype=dtype, **cfg)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    gen = torch.Generator().manual_seed(seed + int(os.environ.get("FX_SEED", "0")))
    tensors = {k: v.to(DTYPES[dtype]).contiguous() for k, v in random_tensors(cfg, gen).items()}
    save_file(tensors, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    write_tokenizer(os.path.join(d, "tokenizer.json"), build_vocab(n_words))
    with open(os.path.join(d, "docs.jsonl"), "w", encoding="utf-8") as f:
        for doc in DOCS:
            f.write(json.dumps(doc) + "\n")

    ref = One2SetReference(d)
    stem = PorterStemmer().stem
    token_lists = [source_tokens(doc["title"], doc["abstract"]) for doc in DOCS]
    with torch.inference_mode():
        prepared = [ref.prepare(t) for t in token_lists]
        slots = ref.run_batch(prepared)
        cands = ref_mod.generate(ref, token_lists, len(DOCS), stem)
    stats = collections.Counter()
    documents = []
    for doc, toks, prep, s, c in zip(DOCS, token_lists, prepared, slots, cands):
        for slot in s:
            t = slot["tokens"]
            stats["null"] += NULL in t
            stats["eos"] += t[-1] == EOS and len(t) > 1
            stats["full_length"] += t[-1] not in (EOS, NULL)
            stats["unk"] += UNK in t[:-1] or t[-1] == UNK
            stats["oov_copy"] += any(x >= ref.V for x in t)
            stats["min_gap_below_1e-3"] += min(slot["gaps"]) < 1e-3
        stats["duplicates"] += sum(1 for x in s if ref.slot_phrase(x, prep)) - len(c)
        stats["present"] += sum(x["present"] for x in c)
        documents.append({"id": str(doc["id"]), "tokens": toks, "slots": s, "candidates": c})
    golden = {"version": VERSION, "torch_version": torch.__version__, "storage_dtype": dtype,
              "made_by": "tools/make_one2set_fixtures.py", "documents": documents}
    with open(os.path.join(d, "golden.json"), "w", encoding="utf-8") as f:
        json.dump(golden, f, indent=1)
    print(name, dict(stats))
    return stats


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "one2set"))
    ap.add_argument("--case", choices=sorted(CASES), help="regenerate one case")
    args = ap.parse_args()
    total = collections.Counter()
    for name in [args.case] if args.case else sorted(CASES):
        total.update(make_case(args.out, name))
    for need in ("null", "eos", "full_length", "unk", "oov_copy", "duplicates", "present"):
        assert args.case or total[need] > 0, f"no fixture exercises {need}: change a seed"


if __name__ == "__main__":
    main()
