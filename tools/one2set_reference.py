#!/usr/bin/env python3
"""A PyTorch reference of kpg's One2Set generator: the same model directory (config.json,
model.safetensors, tokenizer.json), the same greedy parallel control-code decoding, written
independently of the Rust code from the authors' released implementation (jiacheng-ye/kg_one2set:
pykp/encoder/transformer.py, pykp/decoder/transformer.py, pykp/modules/multi_head_attn.py,
inference/set_generator.py, utils/string_helper.py) and ../shared/DESIGN.md ("Generator").

It is the peer of `kpg generate` for parity fixtures (tools/make_one2set_fixtures.py) and for
speed (tools/peer_generate.py). Batched over documents (padded, with a key mask) and over all slots
of all documents; the decoder keeps each slot's keys and values and the encoder's cross-attention
keys and values, and runs every step for every slot as the authors' SetGenerator does.

    python tools/one2set_reference.py --generator DIR --input docs.jsonl   # kpg generate's output

Post-processing is the authors' (a slot is read up to its first <eos> or <null>; <null> gives
nothing; <unk> becomes the most-attended source word; confidence = mean token probability without
<eos>), then kpg's additions: duplicates keep their highest score, candidates sorted by score (ties
by slot), each tagged present when its NLTK-Porter-stemmed tokens occur in the stemmed source.
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_porter_fixture import kpg_tokenize  # noqa: E402  (mirror of kpg::preprocess::tokenize)

SPECIAL_TOKENS = ["<pad>", "<unk>", "<bos>", "<eos>", "<sep>", "<peos>", "<null>"]
PAD, UNK, BOS, EOS, NULL = 0, 1, 2, 3, 6


def source_tokens(title, abstract):
    """kpg::preprocess::source_tokens: title . <eos> abstract."""
    return kpg_tokenize(title) + [".", "<eos>"] + kpg_tokenize(abstract)


def sinusoid_table(n_position, d_hid):
    """pykp/modules/position_embed.py with padding_idx = <pad> = 0: row 0 is zero."""
    pos = np.arange(n_position)[:, None].astype(np.float64)
    hid = np.arange(d_hid)[None, :]
    angle = pos / np.power(10000, 2 * (hid // 2) / d_hid)
    table = np.zeros((n_position, d_hid))
    table[:, 0::2] = np.sin(angle[:, 0::2])
    table[:, 1::2] = np.cos(angle[:, 1::2])
    table[0] = 0.0
    return torch.tensor(table, dtype=torch.float32)


def load_vocab(path):
    with open(path, encoding="utf-8") as f:
        vocab = json.load(f)["model"]["vocab"]
    words = [None] * len(vocab)
    for w, i in vocab.items():
        words[i] = w
    assert words[:7] == SPECIAL_TOKENS, words[:7]
    return words


class One2SetReference:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            self.cfg = json.load(f)
        assert self.cfg["architecture"] == "one2set"
        # Weights as stored (f32, f16 or bf16), computed in f32 as kpg does.
        self.w = {k: v.float() for k, v in load_file(os.path.join(model_dir, "model.safetensors")).items()}
        self.words = load_vocab(os.path.join(model_dir, "tokenizer.json"))
        self.word2idx = {w: i for i, w in enumerate(self.words)}
        c = self.cfg
        self.d, self.h = c["d_model"], c["num_heads"]
        self.hd = self.d // self.h
        self.V, self.N, self.L = c["vocab_size"], c["num_control_codes"], c["max_keyphrase_len"]
        self.eps = c.get("layer_norm_eps", 1e-5)
        self.pos = sinusoid_table(max(c["max_source_len"] + 1, self.L), self.d)

    # --- layers -----------------------------------------------------------------------------
    def lin(self, x, name):
        return F.linear(x, self.w[name + ".weight"], self.w.get(name + ".bias"))

    def ln(self, x, name):
        return F.layer_norm(x, (self.d,), self.w[name + ".weight"], self.w[name + ".bias"], self.eps)

    def attend(self, q_in, k, v, name, key_mask=None):
        """MultiHeadAttention with precomputed k, v: q_in [B, Q, d], k, v [B, K, d]; returns the
        output [B, Q, d] and the probabilities [B, H, Q, K]."""
        B, Q, _ = q_in.shape
        K = k.shape[1]
        q = (self.lin(q_in, name + ".q_proj") * self.hd ** -0.5).view(B, Q, self.h, self.hd).transpose(1, 2)
        k = k.view(B, K, self.h, self.hd).transpose(1, 2)
        v = v.view(B, K, self.h, self.hd).transpose(1, 2)
        scores = q @ k.transpose(-1, -2)
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        p = torch.softmax(scores, dim=-1)
        out = (p @ v).transpose(1, 2).reshape(B, Q, self.d)
        return self.lin(out, name + ".out_proj"), p

    def ffn(self, x, name):
        return self.lin(torch.relu(self.lin(x, name + ".ffn.0")), name + ".ffn.3")

    # --- encoder ----------------------------------------------------------------------------
    def encode(self, src, mask):
        """src [B, S] ids, mask [B, S] (True = a token): the encoder output [B, S, d]."""
        S = src.shape[1]
        x = F.embedding(src, self.w["embed.weight"]) * math.sqrt(self.d) + self.pos[1:S + 1][None]
        x = self.lin(x, "encoder.input_fc")
        for i in range(self.cfg["encoder_layers"]):
            p = f"encoder.layer_stacks.{i}"
            h = self.ln(x, p + ".attn_layer_norm")
            k, v = self.lin(h, p + ".self_attn.k_proj"), self.lin(h, p + ".self_attn.v_proj")
            x = x + self.attend(h, k, v, p + ".self_attn", mask)[0]
            x = x + self.ffn(self.ln(x, p + ".ffn_layer_norm"), p)
        return self.ln(x, "encoder.layer_norm")

    # --- parallel control-code decoding ---------------------------------------------------------
    def decode(self, src, mask, src_ext, max_oov):
        """Greedy decoding of all N slots of all B documents for L steps. Returns tokens, their
        probabilities and the top-2 gaps [B, N, L], and head-0 attention [B, N, L, S]."""
        B, S = src.shape
        N, L, d, V = self.N, self.L, self.d, self.V
        n_dec = self.cfg["decoder_layers"]
        enc = self.encode(src, mask)
        cross = [(self.lin(enc, f"decoder.layer_stacks.{i}.encoder_attn.k_proj"),
                  self.lin(enc, f"decoder.layer_stacks.{i}.encoder_attn.v_proj")) for i in range(n_dec)]
        self_k = [torch.zeros(B * N, L, d) for _ in range(n_dec)]
        self_v = [torch.zeros(B * N, L, d) for _ in range(n_dec)]
        control = self.w["decoder.control_code.weight"]  # [N, d]
        tokens = torch.full((B, N), BOS, dtype=torch.long)
        out_tok = torch.zeros(B, N, L, dtype=torch.long)
        out_prob = torch.zeros(B, N, L)
        out_gap = torch.zeros(B, N, L)
        out_attn = torch.zeros(B, N, L, S)
        ext = src_ext[:, None, :].expand(B, N, S)
        for t in range(L):
            inp = tokens.masked_fill(tokens >= V, UNK)
            x = self.lin(F.embedding(inp, self.w["embed.weight"]) * math.sqrt(d), "decoder.input_fc")
            x = x + self.pos[t] + control[None]  # [B, N, d]
            for i in range(n_dec):
                p = f"decoder.layer_stacks.{i}"
                h = self.ln(x, p + ".self_attn_layer_norm").reshape(B * N, 1, d)
                self_k[i][:, t] = self.lin(h[:, 0], p + ".self_attn.k_proj")
                self_v[i][:, t] = self.lin(h[:, 0], p + ".self_attn.v_proj")
                a, _ = self.attend(h, self_k[i][:, :t + 1], self_v[i][:, :t + 1], p + ".self_attn")
                x = x + a.view(B, N, d)
                h = self.ln(x, p + ".encoder_attn_layer_norm")
                a, probs = self.attend(h, cross[i][0], cross[i][1], p + ".encoder_attn", mask)
                x = x + a
                x = x + self.ffn(self.ln(x, p + ".final_layer_norm"), p)
            feat = self.lin(self.ln(x, "decoder.layer_norm"), "decoder.output_fc")
            vocab_dist = torch.softmax(F.linear(feat, self.w["decoder.output_layer.weight"]), -1)
            p_gen = torch.sigmoid(self.lin(feat, "decoder.p_gen_linear"))  # [B, N, 1]
            attn0 = probs[:, 0]  # head 0 of the last layer: [B, N, S]
            final = torch.cat([p_gen * vocab_dist, vocab_dist.new_zeros(B, N, max_oov)], -1)
            final = final.scatter_add(2, ext, (1 - p_gen) * attn0)
            top = final.topk(2, dim=-1)
            prob, tok = final.max(-1)
            out_tok[:, :, t], out_prob[:, :, t] = tok, prob
            out_gap[:, :, t] = top.values[..., 0] - top.values[..., 1]
            out_attn[:, :, t] = attn0
            tokens = tok
        return out_tok, out_prob, out_gap, out_attn

    # --- documents ---------------------------------------------------------------------------
    def prepare(self, tokens):
        """pykp/utils/io.py build_dataset / extend_vocab_OOV, on the source cut to max_source_len."""
        words = tokens[:self.cfg["max_source_len"]]
        ids, ext, oov = [], [], {}
        for w in words:
            i = self.word2idx.get(w)
            if i is not None and i < self.V:
                ids.append(i)
                ext.append(i)
            else:
                ids.append(UNK)
                ext.append(oov.setdefault(w, self.V + len(oov)))
        return {"words": words, "ids": ids, "ext": ext, "oov": list(oov)}

    def run_batch(self, docs):
        """docs: prepared documents. Returns per document the raw slots (up to and including the
        first <eos>/<null>) as dicts of tokens, probs, gaps, attn_argmax."""
        tok, prob, gap, attn_argmax = self.decode_batch(docs)
        B = len(docs)
        out = []
        for b in range(B):
            slots = []
            for n in range(self.N):
                s = {"tokens": [], "probs": [], "gaps": [], "attn_argmax": []}
                for t in range(self.L):
                    s["tokens"].append(int(tok[b, n, t]))
                    s["probs"].append(float(prob[b, n, t]))
                    s["gaps"].append(float(gap[b, n, t]))
                    s["attn_argmax"].append(int(attn_argmax[b, n, t]))
                    if s["tokens"][-1] in (EOS, NULL):
                        break
                slots.append(s)
            out.append(slots)
        return out

    def decode_batch(self, docs):
        """The tensors of one batch: tokens, probabilities, top-2 gaps and the most-attended
        source position, each [B, N, L]."""
        B = len(docs)
        S = max(len(d["ids"]) for d in docs)
        src = torch.full((B, S), PAD, dtype=torch.long)
        src_ext = torch.full((B, S), PAD, dtype=torch.long)
        mask = torch.zeros(B, S, dtype=torch.bool)
        for b, d in enumerate(docs):
            n = len(d["ids"])
            src[b, :n] = torch.tensor(d["ids"])
            src_ext[b, :n] = torch.tensor(d["ext"])
            mask[b, :n] = True
        max_oov = max(len(d["oov"]) for d in docs)
        tok, prob, gap, attn = self.decode(src, mask, src_ext, max_oov)
        return tok, prob, gap, attn.argmax(-1)

    def slot_phrase(self, slot, doc):
        """utils/string_helper.py: prediction_to_sentence (replace_unk) + split_word_list_from_set."""
        words, score = [], 0.0
        for t, (tok, p) in enumerate(zip(slot["tokens"], slot["probs"])):
            if tok == NULL:
                return None
            if tok == EOS:
                break
            if tok >= self.V:
                words.append(doc["oov"][tok - self.V])
            elif tok == UNK:
                words.append(doc["words"][slot["attn_argmax"][t]])
            else:
                words.append(self.words[tok])
            score += p
        return (words, score / len(words)) if words else None

    def candidates(self, slots, doc, stemmed_source, stem):
        out, seen = [], {}
        for code, slot in enumerate(slots):
            r = self.slot_phrase(slot, doc)
            if r is None:
                continue
            words, score = r
            phrase = " ".join(words)
            if phrase in seen:
                c = out[seen[phrase]]
                if score > c["score"]:
                    c["score"], c["slot"] = score, code
                continue
            stemmed = [stem(w.lower()) for w in words]
            present = any(stemmed_source[i:i + len(stemmed)] == stemmed
                          for i in range(len(stemmed_source) - len(stemmed) + 1))
            seen[phrase] = len(out)
            out.append({"phrase": phrase, "score": score, "slot": code, "present": present})
        out.sort(key=lambda c: (-c["score"], c["slot"]))
        return out


def generate(ref, token_lists, batch_docs, stem):
    """Candidates of every document (a list of source token lists), in batches."""
    results = []
    for start in range(0, len(token_lists), batch_docs):
        chunk = token_lists[start:start + batch_docs]
        docs = [ref.prepare(t) for t in chunk]
        for toks, doc, slots in zip(chunk, docs, ref.run_batch(docs)):
            stemmed = [stem(w.lower()) for w in toks]
            results.append(ref.candidates(slots, doc, stemmed, stem))
    return results


def main():
    from nltk.stem.porter import PorterStemmer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", required=True)
    ap.add_argument("--input", required=True, help="JSON lines {id, title, abstract}")
    ap.add_argument("--batch-docs", type=int, default=32)
    args = ap.parse_args()
    ref = One2SetReference(args.generator)
    recs = [json.loads(l) for l in open(args.input, encoding="utf-8") if l.strip()]
    stem = PorterStemmer().stem
    with torch.inference_mode():
        cands = generate(ref, [source_tokens(r["title"], r["abstract"]) for r in recs], args.batch_docs, stem)
    for r, c in zip(recs, cands):
        print(json.dumps({"id": r["id"], "candidates": c}))


if __name__ == "__main__":
    main()
