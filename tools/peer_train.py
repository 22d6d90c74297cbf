#!/usr/bin/env python3
"""The PyTorch peer of `kpg bench train`: the same training steps on the same batches, done the
way the authors' released code does them (jiacheng-ye/kg_one2set, train_ml.py), for side-by-side
training-speed figures. Not part of CI.

Per step, as kpg's trainer (src/train_generator/step.rs, targets.rs, run.rs): a no-grad greedy pass of
K = 2 steps over every control code (the encoder once, the decoder for step 0 reading <bos> and again
for step 1 reading step 0's argmax, a copied word as <unk>); every target scored against the slots
of its half in one batched gather (OT: Σ_{t<2} P(seq[t]) over every token; Hungarian: <null> and
<pad> tokens score 0), then one assignment per (document, half) on the CPU: the per-problem NumPy
Sinkhorn of tools/peer_ot.py, or scipy.optimize.linear_sum_assignment on the square matrix with the
null target repeated; the slots' targets, loss weights (<pad> 0, <null> 0.2 present / 0.1 absent,
else 1) and teacher-forced inputs; the loss of tools/one2set_train_reference.py (no dropout),
backward, clip_grad_norm_(1.0) and torch.optim.Adam(lr 1e-4, betas (0.9, 0.998), eps 1e-9).
Weights are random, float32, initialised as kpg's Params::init does (by distribution, not bit for
bit). Compare with kpg's dropout off:

    kpg bench train --data DATA --preset tiny --steps 10 --dropout 0 --dump /tmp/batches.jsonl
    python tools/peer_train.py --batches /tmp/batches.jsonl [--threads N]

The first batch is a warm-up; the rest are timed. Prints one JSON line like kpg's, with the mean
training loss of the timed steps.
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_train_fixtures import specs  # noqa: E402
from one2set_train_reference import final_dist, train_loss  # noqa: E402
from peer_ot import assign_one  # noqa: E402

PAD, UNK, BOS, NULL = 0, 1, 2, 6
ASSIGN_STEPS = 2
NULL_WEIGHT = (0.2, 0.1)  # present half, absent half
OT = dict(tau=10.0, top_k=3, eps=1e-3, iters=100)


def init_weights(cfg, seed=0):
    """kpg's Params::init by distribution: Xavier-uniform attention projections, uniform
    ±1/sqrt(fan_in) for other linears (biases too), ±0.1 embeddings and control codes, LayerNorm 1/0."""
    g = torch.Generator().manual_seed(seed)
    shapes = dict(specs(cfg))
    w = {}
    for name, shape in specs(cfg):
        weight = shapes[name.replace(".bias", ".weight")]  # a bias takes its weight's fans
        fan_out, fan_in = weight[0], weight[-1]
        if "layer_norm" in name:
            t = torch.ones(shape) if name.endswith(".weight") else torch.zeros(shape)
        else:
            if name in ("embed.weight", "decoder.control_code.weight"):
                a = 0.1
            elif any(name.endswith(f"{p}_proj.weight") for p in ("q", "k", "v", "out")):
                a = math.sqrt(6.0 / (fan_in + fan_out))
            else:
                a = 1.0 / math.sqrt(fan_in)
            t = (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1).mul_(a).float()
        w[name] = t.requires_grad_(True)
    return w


def half_tensors(halves, h, slots, length):
    """The targets of every document's half h, [B, slots, length], padded with null targets (the
    authors' data loader repeats the null target up to the half's slots)."""
    null = [NULL] + [PAD] * (length - 1)
    rows = [halves[2 * b + h]["sequences"] for b in range(len(halves) // 2)]
    return torch.tensor([r + [null] * (slots - len(r)) for r in rows])


def scores(dists, tgt, method):
    """score[b, j, i] = Σ_{t<K} P_j,t(target_i[t]) for slot j and target i: [B, slots, targets]."""
    B, S, K, _ = dists.shape
    idx = tgt[:, :, :K].permute(0, 2, 1)[:, None].expand(B, S, K, tgt.shape[1])
    p = dists.gather(3, idx)  # [B, slots, K, targets]
    if method == "hungarian":
        p = p.masked_fill(((idx == NULL) | (idx == PAD)), 0.0)
    return p.sum(2)


def solve(score, half, method):
    """The target index of each slot of one (document, half); score is [slots, padded targets]."""
    t = len(half["sequences"])
    if method == "ot":
        return assign_one(np.ascontiguousarray(score[:, :t].T), half["has_null"], **OT)
    _, col = linear_sum_assignment(score, maximize=True)
    real = t - 1 if half["has_null"] else t
    return np.where(col < real, col, t - 1)


def train_step(w, opt, cfg, line, clock):
    N, V, L = cfg["num_control_codes"], cfg["vocab_size"], cfg["max_keyphrase_len"]
    method, halves = line["assign"], line["halves"]
    B = len(line["doc_lens"])
    src = {k: line[k] for k in ("src", "doc_lens", "src_ext", "num_oov")}
    bounds = [(0, N // 2), (N // 2, N)]

    # Greedy K-step decoding of every slot, no gradient; then every half's scores.
    with torch.no_grad():
        inputs, memory = torch.full((B, N, 1), BOS), None
        for step in range(1, ASSIGN_STEPS + 1):
            dist, memory = final_dist(w, cfg, dict(src, dec_in=inputs.reshape(-1).tolist(), steps=step), memory)
            dist = dist.view(B, N, step, -1)
            if step < ASSIGN_STEPS:
                nxt = dist[:, :, -1].argmax(-1)
                inputs = torch.cat([inputs, nxt.masked_fill(nxt >= V, UNK)[..., None]], -1)
        tgts = [half_tensors(halves, h, hi - lo, L) for h, (lo, hi) in enumerate(bounds)]
        score = [scores(dist[:, lo:hi], tgts[h], method).double().numpy() for h, (lo, hi) in enumerate(bounds)]
    clock.lap("assignment_scoring")

    assign = [torch.from_numpy(np.stack([solve(score[h][b], halves[2 * b + h], method) for b in range(B)]))
              for h in range(2)]
    clock.lap("assignment_solve")

    # Slot targets, loss weights and teacher-forced inputs (the authors reorder trg by the assignment).
    target = torch.cat([t.gather(1, a.long()[..., None].expand(-1, -1, L)) for t, a in zip(tgts, assign)], 1)
    null_w = torch.tensor([NULL_WEIGHT[0]] * (N // 2) + [NULL_WEIGHT[1]] * (N - N // 2))[None, :, None]
    weight = torch.where(target == PAD, 0.0, torch.where(target == NULL, null_w, 1.0))
    dec_in = torch.cat([torch.full((B, N, 1), BOS), target[..., :-1]], -1)
    dec_in = dec_in.masked_fill(dec_in >= V, UNK)
    tokens = int((target != PAD).sum())
    batch = dict(src, dec_in=dec_in.reshape(-1).tolist(), steps=L, targets=target.reshape(-1).tolist(),
                 weights=weight.reshape(-1).tolist(), normalizer=float(max(tokens, 1)))
    opt.zero_grad(set_to_none=True)
    clock.lap(None)

    loss = train_loss(w, cfg, batch)
    clock.lap("forward")
    loss.backward()
    clock.lap("backward")
    torch.nn.utils.clip_grad_norm_(list(w.values()), 1.0)
    opt.step()
    clock.lap("optimiser")
    return loss.item(), tokens


class Clock:
    """Per-phase seconds, summed over the timed steps."""

    def __init__(self):
        phases = ["assignment_scoring", "assignment_solve", "forward", "backward", "optimiser"]
        self.split = dict.fromkeys(phases, 0.0)
        self.total = 0.0

    def start(self):
        self.begin = self.last = time.perf_counter()

    def lap(self, phase):
        now = time.perf_counter()
        if phase:
            self.split[phase] += now - self.last
        self.last = now

    def stop(self):
        self.total += self.last - self.begin


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", required=True, help="JSON lines written by kpg bench train --dump")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with open(args.batches, encoding="utf-8") as f:
        lines = [json.loads(x) for x in f if x.strip()]
    if len(lines) < 2:
        sys.exit("peer_train: need a warm-up batch and at least one timed batch")
    cfg = lines[0]["config"]
    torch.manual_seed(args.seed)
    w = init_weights(cfg, args.seed)
    opt = torch.optim.Adam(list(w.values()), lr=1e-4, betas=(0.9, 0.998), eps=1e-9)

    warm, timed = Clock(), Clock()
    losses, tokens, examples = [], 0, 0
    for i, line in enumerate(lines):
        clock = warm if i == 0 else timed
        clock.start()
        loss, n = train_step(w, opt, cfg, line, clock)
        clock.stop()
        if not math.isfinite(loss):
            sys.exit(f"peer_train: the loss is {loss} at step {i}")
        if i > 0:
            losses.append(loss)
            tokens += n
            examples += len(line["doc_lens"])
    steps = len(losses)
    ms = lambda s: round(s / steps * 1e4) / 10.0
    print(json.dumps({
        "bench": "train-peer",
        "peer": "pytorch, the authors' way (kg_one2set train_ml.py)",
        "config": cfg,
        "assign": lines[0]["assign"],
        "batch_size": len(lines[1]["doc_lens"]),
        "steps": steps,
        "threads": torch.get_num_threads(),
        "examples_per_s": examples / timed.total,
        "target_tokens_per_step": tokens / steps,
        "step_ms": ms(timed.total),
        "split_ms": {k: ms(v) for k, v in timed.split.items()},
        "mean_loss": sum(losses) / steps,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
