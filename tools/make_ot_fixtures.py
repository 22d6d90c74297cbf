#!/usr/bin/env python3
"""Writes the target-assignment fixtures of tests/assign.rs from tools/ot_reference.py:

    python tools/make_ot_fixtures.py [--out tests/fixtures/ot]

- problems.json: the reference parameters and random score matrices plus the edge cases (only the
  null target, one target, N/2 real targets and no null, supplies that overflow the slots and need
  the fix-up, equal rows and equal slack, all-zero rows and slots, tiny and huge scores, slot
  counts 1, 2, 3, 7 and 20 besides 10);
- problems_params.json: a few problems under other parameters (tau, top_k, eps, iters);
- expected.json: per file, the reference's OT results and Hungarian assignments, with the versions
  that produced them.
"""

import argparse
import json
import os
import sys

import numpy as np
import scipy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ot_reference  # noqa: E402


def realistic(rng, real, slots, has_null):
    """K = 2 step sums of probabilities: some slots favour a target, the rest is small."""
    t = real + int(has_null)
    score = 0.2 * rng.random((t, slots, 2)) ** 4
    for j in range(slots):
        if rng.random() < 0.5:
            score[rng.integers(t), j] = 0.3 + 0.7 * rng.random(2)
    return score.sum(-1)


def dominating(rng, real, slots, per_target):
    """Each real target owns `per_target` slots (cycling) and the rest is near 0 (mu^(1/10) of
    1e-12 is 0.06), so the top-k sums overflow the slots."""
    score = 1e-12 * rng.random((real + 1, slots))
    for i in range(real):
        for q in range(per_target):
            score[i, (i * per_target + q) % slots] = 1.5 + 0.5 * rng.random()
    return score


def problems(rng):
    out = []

    def add(score, has_null, why):
        out.append({"score": np.asarray(score, dtype=np.float64).tolist(), "has_null": bool(has_null), "why": why})

    for n in range(24):
        real = int(rng.integers(0, 11))
        add(realistic(rng, real, 10, real < 10), real < 10, "random")
    add(realistic(rng, 0, 10, True), True, "only null")
    add(realistic(rng, 1, 10, True), True, "one target + null")
    add([[1.0] * 10], True, "only null, flat")
    for _ in range(3):
        add(realistic(rng, 10, 10, False), False, "N/2 real targets, no null")
    add(rng.random((10, 10)) * 2, False, "no null, uniform scores")
    for real, per in [(5, 3), (9, 3)]:
        add(dominating(rng, real, 10, per), True, f"fix-up: {real} targets own {per} slots each")
    found = 0
    while found < 6:
        real = int(rng.integers(3, 10))
        score = 1e-12 * rng.random((real + 1, 10))
        for i in range(real):
            score[i, rng.choice(10, size=int(rng.integers(1, 4)), replace=False)] = 1.0 + rng.random()
        if overflows({"score": score, "has_null": True}, 10.0, 3):
            add(score, True, f"fix-up: {real} targets owning random slots")
            found += 1
    # Overflow with equal slack: pairs of equal rows sharing their slots.
    s = np.full((7, 10), 1e-20)
    for p in range(3):
        s[2 * p, 3 * p : 3 * p + 3] = 1.0
        s[2 * p + 1, 3 * p : 3 * p + 3] = 1.0
    add(s, True, "fix-up with equal slack (equal row pairs)")
    # Two equal rows, 1.5 each before rounding, 4 > 3 slots: exactly equal slack, one gives back.
    add([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1e-30] * 3], True, "fix-up: exactly equal slack")
    add(np.ones((6, 10)), True, "all scores equal")
    add(np.ones((10, 10)), False, "all scores equal, no null")
    e = realistic(rng, 4, 10, True)
    e[1] = e[0]
    e[3] = e[2]
    add(e, True, "equal rows")
    z = realistic(rng, 5, 10, True)
    z[2] = 0.0
    add(z, True, "a real target scoring 0 everywhere")
    z = realistic(rng, 5, 10, True)
    z[:, 3] = 0.0
    z[:, 7] = 0.0
    add(z, True, "slots where every target scores 0")
    add(np.zeros((4, 10)), True, "all zeros")
    add(realistic(rng, 5, 10, True) * 1e-300, True, "tiny scores (1e-300)")
    add(realistic(rng, 5, 10, True) * 1e-310, True, "subnormal scores")
    add(realistic(rng, 5, 10, True) * 1e300, True, "huge scores (1e300)")
    t = realistic(rng, 6, 10, True)
    t[t < 0.05] = 0.0
    add(t, True, "exact zeros among the scores")
    w = realistic(rng, 6, 10, True)
    w[:3] *= 1e-200
    add(w, True, "rows 200 orders of magnitude apart")
    add([[0.5]], True, "one slot, only null")
    add([[0.5]], False, "one slot, one target")
    add(realistic(rng, 1, 2, True), True, "two slots")
    add(realistic(rng, 2, 2, False), False, "two slots, no null")
    for slots in (3, 7):
        for real in (0, 1, slots // 2, slots - 1):
            add(realistic(rng, real, slots, True), True, f"{slots} slots")
        add(realistic(rng, slots, slots, False), False, f"{slots} slots, no null")
    for real in (0, 3, 10, 19):
        add(realistic(rng, real, 20, True), True, "20 slots")
    add(realistic(rng, 20, 20, False), False, "20 slots, no null")
    add(dominating(rng, 12, 20, 3), True, "fix-up: 20 slots")
    return out


def overflows(p, tau, top_k):
    """Whether the real targets' supplies exceed the slots before the fix-up."""
    if not p["has_null"] or len(p["score"]) < 2:
        return False
    norm = ot_reference.normalise(np.array(p["score"]), tau)
    k = min(top_k, norm.shape[1])
    raw = np.sort(norm, axis=1)[:, ::-1][:, :k].sum(1)
    return np.ceil(raw[:-1]).sum() > norm.shape[1]


def margin_warnings(name, doc, results):
    """A near tie in a plan column (not an exact one) would make the argmax fragile across
    implementations: report it so that the problem can be replaced."""
    for k, r in enumerate(results):
        plan = np.array(r["plan"])
        if plan.shape[0] < 2:
            continue
        top = np.sort(plan, axis=0)[-2:]
        gap = top[1] - top[0]
        fragile = (gap > 0) & (gap < 1e-9 * np.maximum(top[1], 1e-300))
        if fragile.any():
            print(f"warning: {name} problem {k} ({doc['problems'][k]['why']}): near tie in the plan", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/fixtures/ot")
    ap.add_argument("--seed", type=int, default=20261127)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.out, exist_ok=True)

    main_doc = {**ot_reference.DEFAULTS, "problems": problems(rng)}
    other = [
        {"score": realistic(rng, r, 10, r < 10).tolist(), "has_null": r < 10, "why": "random"}
        for r in (0, 2, 5, 9, 10)
    ]
    other.append({"score": dominating(rng, 6, 10, 3).tolist(), "has_null": True, "why": "fix-up: 6 targets own 3 slots each"})
    params_doc = {"tau": 1.0, "top_k": 2, "eps": 1e-2, "iters": 50, "problems": other}

    expected = {
        "meta": {
            "generator": "tools/make_ot_fixtures.py",
            "reference": "tools/ot_reference.py",
            "seed": args.seed,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
        }
    }
    for name, doc in [("problems.json", main_doc), ("problems_params.json", params_doc)]:
        # `why` is for people reading the file: kpg debug ot rejects unknown fields, so it lives
        # in a parallel list.
        whys = [p["why"] for p in doc["problems"]]
        clean = {**doc, "problems": [{"score": p["score"], "has_null": p["has_null"]} for p in doc["problems"]]}
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            json.dump(clean, f)
            f.write("\n")
        for k, p in enumerate(doc["problems"]):
            over = overflows(p, doc["tau"], doc["top_k"])
            assert over == p["why"].startswith("fix-up"), (name, k, p["why"], over)
        ot = ot_reference.solve(clean, "ot")
        margin_warnings(name, doc, ot)
        expected[name] = {"why": whys, "ot": ot, "hungarian": ot_reference.solve(clean, "hungarian")}
        print(f"{name}: {len(whys)} problems", file=sys.stderr)
    with open(os.path.join(args.out, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f)
        f.write("\n")


if __name__ == "__main__":
    main()
