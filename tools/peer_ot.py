#!/usr/bin/env python3
"""The NumPy peer of `kpg bench ot`: training's OT target assignment done the authors' way
(DeepLearnXMU/KPG-SetLLM, OTA_One2Set/pykp/utils/label_assign.py): one problem at a time in a Python
loop, each vectorised with NumPy (normalisation, top-k by argpartition, the supply loop) and the
log-domain Sinkhorn with a logsumexp, float64, on the problems that `kpg bench ot --dump FILE`
wrote. Not part of CI.

The authors call scipy.special.logsumexp; since SciPy 1.15 that function goes through the array-API
layer and costs about ten times more on these tiny arrays, which would flatter kpg. The peer uses
the plain NumPy form the older SciPy ran instead (max, exp, sum, log), so the figure is the
authors' algorithm at its best in NumPy.

    kpg bench ot --problems 4096 --targets 11 --slots 10 --dump /tmp/ot.json
    python tools/peer_ot.py --problems /tmp/ot.json

Prints one JSON line: problems/s (fastest of --repeats runs) and `assign_sum`, the sum of every
assigned target index, which should equal kpg's.
"""

import argparse
import json
import time

import numpy as np


def logsumexp(a, axis):
    m = np.max(a, axis=axis, keepdims=True)
    return np.log(np.sum(np.exp(a - m), axis=axis)) + np.squeeze(m, axis=axis)


def normalise(score, tau):
    p = score ** (1.0 / tau)
    total = p.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = p / total
    out[:, total == 0] = 1.0 / score.shape[0]
    return out


def supplies(norm, has_null, top_k):
    t, s = norm.shape
    if not has_null:
        return np.ones(t)
    k = min(top_k, s)
    if k < s:
        top = np.take_along_axis(norm, np.argpartition(-norm, kth=k - 1, axis=1)[:, :k], axis=1)
    else:
        top = norm
    raw = -np.sort(-top, axis=1)
    raw = raw.sum(axis=1)
    supply = np.ceil(raw)
    left = int(s - supply[:-1].sum())
    supply[-1] = left
    if left < 0:
        supply[-1] = 0.0
        slack = (supply - raw)[:-1]
        order = np.lexsort((np.arange(t - 1), -slack))
        pos = 0
        while left < 0:
            i = order[pos]
            if supply[i] >= 2:
                supply[i] -= 1
                left += 1
            pos = (pos + 1) % (t - 1)
    return supply


def sinkhorn(supply, demand, cost, eps, iters):
    u = np.ones_like(supply)
    v = np.ones_like(demand)
    for _ in range(iters):
        v += eps * (np.log(demand + 1e-8) - logsumexp(((-cost + u[:, None]) + v[None, :]).T / eps, axis=-1))
        u += eps * (np.log(supply + 1e-8) - logsumexp(((-cost + u[:, None]) + v[None, :]) / eps, axis=-1))
    return np.exp(((-cost + u[:, None]) + v[None, :]) / eps)


def assign_one(score, has_null, tau, top_k, eps, iters):
    norm = normalise(score, tau)
    supply = supplies(norm, has_null, top_k)
    plan = sinkhorn(supply, np.ones(score.shape[1]), -norm, eps, iters)
    return np.argmax(plan, axis=0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", required=True, help="JSON written by kpg bench ot --dump")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    with open(args.problems, encoding="utf-8") as f:
        doc = json.load(f)
    params = dict(tau=doc.get("tau", 10.0), top_k=doc.get("top_k", 3), eps=doc.get("eps", 1e-3), iters=doc.get("iters", 100))
    problems = [(np.array(p["score"], dtype=np.float64), bool(p["has_null"])) for p in doc["problems"]]
    best = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        assigns = [assign_one(s, n, **params) for s, n in problems]
        best = min(best, time.perf_counter() - start)
    print(
        json.dumps(
            {
                "bench": "ot",
                "peer": "numpy per problem (the authors' way)",
                "numpy": np.__version__,
                "problems": len(problems),
                "seconds": best,
                "problems_per_s": len(problems) / best,
                "assign_sum": int(sum(int(a.sum()) for a in assigns)),
            }
        )
    )


if __name__ == "__main__":
    main()
