#!/usr/bin/env python3
"""The PyTorch peer of `kpg bench generate --device cuda`: the One2Set reference generator
(tools/one2set_reference.py) at its best settings on a GPU: weights and activations in bf16,
batched over documents (padded, with a key mask) and over all N slots of all documents, no Python
loop per slot or per document, fused scaled-dot-product attention where no probabilities are
needed, preallocated self-attention caches, cross-attention keys and values computed once per batch,
and the loop stopped as soon as every slot has finished. Timing is CUDA-synchronised.

    kpg bench generate --generator DIR --docs 4096 --words 300 --dump /tmp/docs.jsonl ...
    python tools/peer_generate_gpu.py --generator DIR --dump /tmp/docs.jsonl --device cuda

Prints one JSON line: documents/s of the model work (vocabulary lookup, padding, upload, encoder,
all decoding steps, and the tokens back on the host), the fastest of --repeats runs, and how many
documents decoded exactly kpg's candidate phrases (`--check`, post-processing on the CPU).
Runs on the CPU too (`--device cpu --dtype float32`), to check it with a tiny model.
"""

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from one2set_reference import BOS, EOS, NULL, PAD, UNK, One2SetReference  # noqa: E402


class FastOne2Set:
    """One2SetReference's weights on a device, in one dtype, with fused q/k/v projections."""

    def __init__(self, ref, device, dtype):
        self.ref, self.dev, self.dt = ref, device, dtype
        c = ref.cfg
        self.d, self.h, self.hd = ref.d, ref.h, ref.hd
        self.V, self.N, self.L = ref.V, ref.N, ref.L
        self.eps = ref.eps
        w = {k: v.to(device=device, dtype=dtype) for k, v in ref.w.items()}
        self.w = w
        self.pos = ref.pos.to(device=device, dtype=dtype)
        cat = lambda names, suffix: torch.cat([w[n + suffix] for n in names])  # noqa: E731
        self.enc = []
        for i in range(c["encoder_layers"]):
            p = f"encoder.layer_stacks.{i}"
            qkv = [f"{p}.self_attn.{x}_proj" for x in "qkv"]
            self.enc.append((p, cat(qkv, ".weight"), cat(qkv, ".bias")))
        self.dec = []
        for i in range(c["decoder_layers"]):
            p = f"decoder.layer_stacks.{i}"
            qkv = [f"{p}.self_attn.{x}_proj" for x in "qkv"]
            kv = [f"{p}.encoder_attn.{x}_proj" for x in "kv"]
            self.dec.append((p, cat(qkv, ".weight"), cat(qkv, ".bias"), cat(kv, ".weight"), cat(kv, ".bias")))

    def lin(self, x, name):
        return F.linear(x, self.w[name + ".weight"], self.w.get(name + ".bias"))

    def ln(self, x, name):
        return F.layer_norm(x, (self.d,), self.w[name + ".weight"], self.w[name + ".bias"], self.eps)

    def heads(self, x):
        B, T, _ = x.shape
        return x.view(B, T, self.h, self.hd).transpose(1, 2)

    def merge(self, x):
        B, H, T, hd = x.shape
        return x.transpose(1, 2).reshape(B, T, H * hd)

    def ffn(self, x, p):
        return self.lin(torch.relu(self.lin(x, p + ".ffn.0")), p + ".ffn.3")

    @torch.inference_mode()
    def decode(self, src, mask, src_ext, max_oov):
        B, S = src.shape
        N, L, d, V = self.N, self.L, self.d, self.V
        attn_mask = mask[:, None, None, :]  # [B, 1, 1, S]
        # Encoder.
        x = F.embedding(src, self.w["embed.weight"]) * math.sqrt(d) + self.pos[1:S + 1][None]
        x = self.lin(x, "encoder.input_fc")
        for p, wqkv, bqkv in self.enc:
            q, k, v = F.linear(self.ln(x, p + ".attn_layer_norm"), wqkv, bqkv).split(d, -1)
            a = F.scaled_dot_product_attention(self.heads(q), self.heads(k), self.heads(v), attn_mask=attn_mask)
            x = x + self.lin(self.merge(a), p + ".self_attn.out_proj")
            x = x + self.ffn(self.ln(x, p + ".ffn_layer_norm"), p)
        enc = self.ln(x, "encoder.layer_norm")
        cross = []
        for p, _, _, wkv, bkv in self.dec:
            k, v = F.linear(enc, wkv, bkv).split(d, -1)
            cross.append((self.heads(k), self.heads(v)))  # [B, H, S, hd]
        # Decoding: all N slots of all B documents per step; slots as a second batch axis, so that
        # a document's slots are the queries of one attention over its keys (no key copies).
        n_dec = len(self.dec)
        self_k = torch.zeros(n_dec, B * N, self.h, L, self.hd, device=self.dev, dtype=self.dt)
        self_v = torch.zeros_like(self_k)
        control = self.w["decoder.control_code.weight"]  # [N, d]
        tokens = torch.full((B, N), BOS, dtype=torch.long, device=self.dev)
        out_tok = torch.zeros(B, N, L, dtype=torch.long, device=self.dev)
        out_prob = torch.zeros(B, N, L, dtype=torch.float32, device=self.dev)
        out_arg = torch.zeros(B, N, L, dtype=torch.long, device=self.dev)
        done = torch.zeros(B, N, dtype=torch.bool, device=self.dev)
        ext = src_ext[:, None, :].expand(B, N, S)
        scale = self.hd ** -0.5
        for t in range(L):
            inp = tokens.masked_fill(tokens >= V, UNK)
            x = self.lin(F.embedding(inp, self.w["embed.weight"]) * math.sqrt(d), "decoder.input_fc")
            x = x + self.pos[t] + control[None]  # [B, N, d]
            for i, (p, wqkv, bqkv, _, _) in enumerate(self.dec):
                h = self.ln(x, p + ".self_attn_layer_norm").reshape(B * N, d)
                q, k, v = F.linear(h, wqkv, bqkv).split(d, -1)
                self_k[i, :, :, t] = k.view(B * N, self.h, self.hd)
                self_v[i, :, :, t] = v.view(B * N, self.h, self.hd)
                a = F.scaled_dot_product_attention(
                    q.view(B * N, self.h, 1, self.hd), self_k[i, :, :, :t + 1], self_v[i, :, :, :t + 1])
                x = x + self.lin(a.reshape(B, N, d), p + ".self_attn.out_proj")
                h = self.ln(x, p + ".encoder_attn_layer_norm")
                q = self.heads(self.lin(h, p + ".encoder_attn.q_proj"))  # [B, H, N, hd]
                ck, cv = cross[i]
                if i == n_dec - 1:
                    scores = (q * scale) @ ck.transpose(-1, -2)
                    probs = torch.softmax(scores.masked_fill(~attn_mask, float("-inf")).float(), -1)
                    a = probs.to(self.dt) @ cv
                    attn0 = probs[:, 0]  # [B, N, S] f32
                else:
                    a = F.scaled_dot_product_attention(q, ck, cv, attn_mask=attn_mask)
                x = x + self.lin(self.merge(a), p + ".encoder_attn.out_proj")
                x = x + self.ffn(self.ln(x, p + ".final_layer_norm"), p)
            feat = self.lin(self.ln(x, "decoder.layer_norm"), "decoder.output_fc")
            logits = F.linear(feat, self.w["decoder.output_layer.weight"]).float()
            p_gen = torch.sigmoid(self.lin(feat, "decoder.p_gen_linear").float())  # [B, N, 1]
            vocab_dist = torch.softmax(logits, -1)
            final = torch.cat([p_gen * vocab_dist, vocab_dist.new_zeros(B, N, max_oov)], -1)
            final = final.scatter_add(2, ext, (1 - p_gen) * attn0)
            prob, tok = final.max(-1)
            out_tok[:, :, t], out_prob[:, :, t] = tok, prob
            out_arg[:, :, t] = attn0.argmax(-1)
            tokens = tok
            done |= (tok == EOS) | (tok == NULL)
            if t + 1 < L and bool(done.all()):  # one sync a step, to stop when every slot is done
                break
        return out_tok.cpu(), out_prob.cpu(), out_arg.cpu()


def batch_tensors(ref, docs, device):
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
    return src.to(device), mask.to(device), src_ext.to(device), max_oov


def slots_of(ref, tok, prob, arg, b):
    out = []
    for n in range(ref.N):
        s = {"tokens": [], "probs": [], "attn_argmax": []}
        for t in range(tok.shape[2]):
            s["tokens"].append(int(tok[b, n, t]))
            s["probs"].append(float(prob[b, n, t]))
            s["attn_argmax"].append(int(arg[b, n, t]))
            if s["tokens"][-1] in (EOS, NULL):
                break
        out.append(s)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", required=True)
    ap.add_argument("--dump", required=True, help="kpg bench generate --dump output (tokens, candidates)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "float32"])
    ap.add_argument("--batch-docs", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--check", action="store_true", help="compare candidates with kpg's (needs nltk)")
    args = ap.parse_args()
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    ref = One2SetReference(args.generator)
    model = FastOne2Set(ref, args.device, dtype)
    recs = [json.loads(l) for l in open(args.dump, encoding="utf-8") if l.strip()]
    tokens = [r["tokens"] for r in recs]
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def model_run():
        results = []
        for start in range(0, len(tokens), args.batch_docs):
            docs = [ref.prepare(t) for t in tokens[start:start + args.batch_docs]]
            results.append((docs, model.decode(*batch_tensors(ref, docs, args.device))))
        sync()
        return results

    results = model_run()  # warm-up
    best = float("inf")
    for _ in range(args.repeats):
        sync()
        t = time.perf_counter()
        model_run()
        best = min(best, time.perf_counter() - t)

    same = None
    if args.check:
        from nltk.stem.porter import PorterStemmer
        stem = PorterStemmer().stem
        cands = []
        for docs, (tok, prob, arg) in results:
            for b, doc in enumerate(docs):
                stemmed = [stem(w.lower()) for w in doc["words"]]
                cands.append(ref.candidates(slots_of(ref, tok, prob, arg, b), doc, stemmed, stem))
        same = sum([c["phrase"] for c in got] == [c["phrase"] for c in r["candidates"]]
                   for got, r in zip(cands, recs))
    n = len(recs)
    print(json.dumps({
        "peer": "pytorch-gpu",
        "torch_version": torch.__version__,
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "dtype": args.dtype,
        "generator": args.generator,
        "docs": n,
        "batch_docs": args.batch_docs,
        "seconds": round(best, 4),
        "documents_per_s": round(n / best, 2),
        "slots_per_s": round(n * ref.N / best, 1),
        "same_candidates_as_kpg": None if same is None else f"{same}/{n}",
    }))


if __name__ == "__main__":
    main()
