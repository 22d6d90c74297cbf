#!/usr/bin/env python3
"""PyTorch peer of kpg's One2Set training model (src/autodiff/): the same generator as
tools/one2set_reference.py, teacher-forced on a batch of padded documents with every slot's
decoder inputs, and the same loss, written from the authors' released code (jiacheng-ye/kg_one2set:
pykp/encoder/transformer.py, pykp/decoder/transformer.py, pykp/modules/multi_head_attn.py,
pykp/utils/masked_loss.py) with dropout off. Autograd gives the gradients that
tests/train_parity.rs holds kpg's backward pass to (tools/make_train_fixtures.py).

Batch (kpg's TrainBatch, packed): src, doc_lens, src_ext, num_oov, dec_in [docs*N*steps], steps;
targets [docs*N*steps] extended ids, weights (0 = masked), normalizer.
"""

import math

import torch
import torch.nn.functional as F

from one2set_reference import PAD, sinusoid_table


def attend(w, name, q_in, kv_in, hd, heads, allowed):
    """MultiHeadAttention: q_in [B, Q, d], kv_in [B, K, d], allowed [B, Q, K] bool. Returns the
    output and the probabilities [B, H, Q, K]."""
    B, Q, d = q_in.shape
    K = kv_in.shape[1]
    lin = lambda x, n: F.linear(x, w[f"{name}.{n}.weight"], w[f"{name}.{n}.bias"])
    q = (lin(q_in, "q_proj") * hd ** -0.5).view(B, Q, heads, hd).transpose(1, 2)
    k = lin(kv_in, "k_proj").view(B, K, heads, hd).transpose(1, 2)
    v = lin(kv_in, "v_proj").view(B, K, heads, hd).transpose(1, 2)
    scores = (q @ k.transpose(-1, -2)).masked_fill(~allowed[:, None], float("-inf"))
    p = torch.softmax(scores, dim=-1)
    out = (p @ v).transpose(1, 2).reshape(B, Q, d)
    return lin(out, "out_proj"), p


def final_dist(w, cfg, batch, memory=None):
    """The copy-augmented output distributions [B, N*steps, V + max(num_oov)] of every decoder row
    of `batch`, and the encoder's memory (enc, mask, src_ext): given back as `memory`, the decoder
    reads other inputs (dec_in, steps) of the same sources without running the encoder again."""
    d, heads = cfg["d_model"], cfg["num_heads"]
    hd, N, V, eps = d // heads, cfg["num_control_codes"], cfg["vocab_size"], cfg["layer_norm_eps"]
    steps, lens = batch["steps"], batch["doc_lens"]
    B, S = len(lens), max(lens)
    dt = w["embed.weight"].dtype
    pos = sinusoid_table(max(cfg["max_source_len"] + 1, cfg["max_keyphrase_len"]), d).to(dt)
    lin = lambda x, n: F.linear(x, w[n + ".weight"], w.get(n + ".bias"))
    ln = lambda x, n: F.layer_norm(x, (d,), w[n + ".weight"], w[n + ".bias"], eps)
    ffn = lambda x, n: lin(torch.relu(lin(x, n + ".ffn.0")), n + ".ffn.3")
    # padding_idx = <pad>: the authors' nn.Embedding never updates that row.
    emb = lambda ids: F.embedding(ids, w["embed.weight"], padding_idx=PAD)

    if memory is None:
        src = torch.full((B, S), PAD, dtype=torch.long)
        src_ext = torch.full((B, S), PAD, dtype=torch.long)
        mask = torch.zeros(B, S, dtype=torch.bool)
        at = 0
        for b, n in enumerate(lens):
            src[b, :n] = torch.tensor(batch["src"][at:at + n])
            src_ext[b, :n] = torch.tensor(batch["src_ext"][at:at + n])
            mask[b, :n] = True
            at += n

        # Encoder.
        x = lin(emb(src) * math.sqrt(d) + pos[1:S + 1][None], "encoder.input_fc")
        enc_allowed = mask[:, None, :].expand(B, S, S)
        for i in range(cfg["encoder_layers"]):
            p = f"encoder.layer_stacks.{i}"
            h = ln(x, p + ".attn_layer_norm")
            x = x + attend(w, p + ".self_attn", h, h, hd, heads, enc_allowed)[0]
            x = x + ffn(ln(x, p + ".ffn_layer_norm"), p)
        enc = ln(x, "encoder.layer_norm")
        memory = enc, mask, src_ext
    enc, mask, src_ext = memory

    # Decoder: [B, N*steps] rows, block-diagonal causal self-attention.
    dec_in = torch.tensor(batch["dec_in"]).view(B, N, steps)
    y = lin(emb(dec_in) * math.sqrt(d), "decoder.input_fc")
    y = y + pos[:steps][None, None] + w["decoder.control_code.weight"][None, :, None]
    y = y.reshape(B, N * steps, d)
    blocks = torch.block_diag(*[torch.tril(torch.ones(steps, steps))] * N).bool()
    self_allowed = blocks[None].expand(B, -1, -1)
    cross_allowed = mask[:, None, :].expand(B, N * steps, S)
    for i in range(cfg["decoder_layers"]):
        p = f"decoder.layer_stacks.{i}"
        h = ln(y, p + ".self_attn_layer_norm")
        y = y + attend(w, p + ".self_attn", h, h, hd, heads, self_allowed)[0]
        a, probs = attend(w, p + ".encoder_attn", ln(y, p + ".encoder_attn_layer_norm"), enc, hd, heads,
                          cross_allowed)
        y = y + a
        y = y + ffn(ln(y, p + ".final_layer_norm"), p)
    feat = lin(ln(y, "decoder.layer_norm"), "decoder.output_fc")
    vocab_dist = torch.softmax(F.linear(feat, w["decoder.output_layer.weight"]), -1)
    p_gen = torch.sigmoid(lin(feat, "decoder.p_gen_linear"))
    attn0 = probs[:, 0]  # [B, N*steps, S]
    max_oov = max(batch["num_oov"])
    final = torch.cat([p_gen * vocab_dist, vocab_dist.new_zeros(B, N * steps, max_oov)], -1)
    final = final.scatter_add(2, src_ext[:, None, :].expand(B, N * steps, S), (1 - p_gen) * attn0)
    return final, memory


def train_loss(w, cfg, batch):
    """The loss of `batch` under weights `w` (a dict of tensors, any float dtype; the shared
    embedding is `embed.weight`)."""
    final = final_dist(w, cfg, batch)[0]
    B, rows = final.shape[:2]
    dt = w["embed.weight"].dtype

    # masked_cross_entropy with the weights as mask (null-target scales folded in).
    target = torch.tensor(batch["targets"]).view(B, rows, 1)
    weight = torch.tensor(batch["weights"], dtype=dt).view(B, rows)
    losses = -torch.gather(torch.log(final + 1e-8), 2, target)[..., 0]
    return (losses * weight).sum() / batch["normalizer"]
