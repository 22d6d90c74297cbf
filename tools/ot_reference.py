#!/usr/bin/env python3
"""Reference for kpg's training target assignment (src/assign/): an independent float64 NumPy
implementation of the optimal-transport assignment with dynamic supplies of "One2Set + Large
Language Model: Best Partners for Keyphrase Generation" (EMNLP 2024) as DESIGN.md fixes it (the
authors' code: DeepLearnXMU/KPG-SetLLM, OTA_One2Set/pykp/utils/label_assign.py), and of the
original One2Set's Hungarian assignment through scipy.optimize.linear_sum_assignment.

    python tools/ot_reference.py --input problems.json [--method ot|hungarian]

reads `{"tau", "top_k", "eps", "iters", "problems": [{"score": [[targets x slots]], "has_null"}]}`
(parameters optional: 10, 3, 1e-3, 100) and prints `{"results": [{"supply", "plan", "assign"}]}`
(or `{"results": [{"assign"}]}` for hungarian), as `kpg debug ot` does.

The decisions DESIGN.md leaves open are taken as in src/assign/ot.rs: a slot where every target
scores 0 normalises to 1/targets; the fix-up takes one slot back from real targets in order of
rounding slack (largest first, equal slack lower index first), cycling, never below 1; a real
target whose row is all zeros keeps supply 0. Sums whose rounding decides a ceiling (the
normalisation over targets, the top-k sums, largest first) are done in a fixed order.
"""

import argparse
import json
import sys

import numpy as np
from scipy.optimize import linear_sum_assignment

DEFAULTS = {"tau": 10.0, "top_k": 3, "eps": 1e-3, "iters": 100}


def normalise(score, tau):
    """mu^(1/tau) over its sum across targets, per slot; an all-zero slot becomes uniform."""
    t, s = score.shape
    p = score ** (1.0 / tau)
    total = np.zeros(s)
    for i in range(t):
        total = total + p[i]
    out = np.full((t, s), 1.0 / t)
    ok = total > 0
    out[:, ok] = p[:, ok] / total[ok]
    return out


def supplies(norm, has_null, top_k):
    t, s = norm.shape
    if not has_null:
        return np.ones(t)
    k = min(top_k, s)
    raw = np.empty(t)
    for i in range(t):
        acc = 0.0
        for x in sorted(norm[i].tolist(), reverse=True)[:k]:
            acc += x
        raw[i] = acc
    real = t - 1
    supply = np.zeros(t)
    supply[:real] = np.ceil(raw[:real])
    left = s - int(supply[:real].sum())
    if left >= 0:
        supply[real] = left
        return supply
    slack = supply[:real] - raw[:real]
    order = sorted(range(real), key=lambda i: (-slack[i], i))
    pos = 0
    while left < 0:
        i = order[pos]
        if supply[i] >= 2:
            supply[i] -= 1
            left += 1
        pos = (pos + 1) % real
    return supply


def logsumexp(x, axis):
    m = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def sinkhorn_log(cost, supply, eps, iters):
    """Log-domain Sinkhorn, potentials started at 1, v updated before u (the authors' form)."""
    t, s = cost.shape
    demand = np.ones(s)
    u = np.ones(t)
    v = np.ones(s)

    def m():
        return (-cost + u[:, None] + v[None, :]) / eps

    for _ in range(iters):
        v = v + eps * (np.log(demand + 1e-8) - logsumexp(m(), axis=0))
        u = u + eps * (np.log(supply + 1e-8) - logsumexp(m(), axis=1))
    return np.exp(m())


def ot_assign(score, has_null, tau=10.0, top_k=3, eps=1e-3, iters=100):
    score = np.asarray(score, dtype=np.float64)
    norm = normalise(score, tau)
    supply = supplies(norm, has_null, top_k)
    plan = sinkhorn_log(-norm, supply, eps, iters)
    assign = np.argmax(plan, axis=0)  # first maximum: the lowest target index
    return {"supply": supply.tolist(), "plan": plan.tolist(), "assign": assign.tolist()}


def hungarian_assign(score, has_null):
    """kg_one2set's assignment: rows = slots, columns = targets with the null target repeated."""
    score = np.asarray(score, dtype=np.float64)
    t, s = score.shape
    real = t - 1 if has_null else t
    cols = [score[min(c, t - 1)] for c in range(s)]
    square = np.stack(cols, axis=1)  # [slots, slots]
    _, col = linear_sum_assignment(square, maximize=True)
    return {"assign": [int(c) if c < real else t - 1 for c in col]}


def solve(doc, method):
    params = {k: doc.get(k, v) for k, v in DEFAULTS.items()}
    out = []
    for p in doc["problems"]:
        if method == "ot":
            out.append(ot_assign(p["score"], p["has_null"], **params))
        else:
            out.append(hungarian_assign(p["score"], p["has_null"]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True)
    ap.add_argument("--method", choices=["ot", "hungarian"], default="ot")
    args = ap.parse_args()
    with open(args.input, encoding="utf-8") as f:
        doc = json.load(f)
    json.dump({"results": solve(doc, args.method)}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
