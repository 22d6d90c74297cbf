#!/usr/bin/env python3
"""The batched PyTorch peer of `kpg bench ot --device cuda`: training's OT target assignment
(src/assign/ot.rs; the authors' DeepLearnXMU/KPG-SetLLM OTA_One2Set/pykp/utils/label_assign.py)
written as a batched log-domain Sinkhorn over padded tensors: the temperature normalisation, the
dynamic supplies with their fix-up, `iters` Sinkhorn iterations and the argmax per slot, with no
Python loop over problems (the fix-up loops over target positions, as the authors' does over
targets, for every problem at once). Same decisions as tools/ot_reference.py (an all-zero slot
normalises to 1/targets; top-k sums largest first; the fix-up by slack, then lower index).

    kpg bench ot --problems 4096 --targets 11 --slots 10 --dump /tmp/ot.json
    python tools/peer_ot_torch.py --problems /tmp/ot.json --device cuda

Times the whole assignment from score tensors on the device to assignments on the device, CUDA-
synchronised, warm-up first, the median of --repeats runs. Prints one JSON line: problems/s and
`assign_sum`, the sum of every assigned target index (kpg's `assign_sum` on the same file).
`--check N` also solves the first N problems with tools/ot_reference.py (NumPy, float64) and counts
the assignments and supplies that differ.
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch


def pad_problems(doc, device, dtype):
    """Scores padded to [problems, T, S] with the valid-row and valid-column masks."""
    problems = doc["problems"]
    n = len(problems)
    t_max = max(len(p["score"]) for p in problems)
    s_max = max(len(p["score"][0]) for p in problems)
    score = torch.zeros(n, t_max, s_max, dtype=torch.float64)
    targets = torch.empty(n, dtype=torch.long)
    slots = torch.empty(n, dtype=torch.long)
    for k, p in enumerate(problems):
        rows = torch.tensor(p["score"], dtype=torch.float64)
        score[k, : rows.shape[0], : rows.shape[1]] = rows
        targets[k], slots[k] = rows.shape
    has_null = torch.tensor([bool(p["has_null"]) for p in problems])
    return (
        score.to(device=device, dtype=dtype),
        targets.to(device),
        slots.to(device),
        has_null.to(device),
    )


def assign(score, targets, slots, has_null, tau, top_k, eps, iters):
    """Returns (supply [n, T], plan [n, T, S], assign [n, S]) for the padded batch."""
    n, t_max, s_max = score.shape
    dev, dtype = score.device, score.dtype
    rows = torch.arange(t_max, device=dev)
    cols = torch.arange(s_max, device=dev)
    row_ok = rows[None, :] < targets[:, None]  # [n, T]
    col_ok = cols[None, :] < slots[:, None]  # [n, S]
    ok = row_ok[:, :, None] & col_ok[:, None, :]  # [n, T, S]

    # 1. mu^(1/tau) over its sum across targets; an all-zero slot becomes uniform.
    p = torch.where(ok, score.pow(1.0 / tau), torch.zeros((), dtype=dtype, device=dev))
    total = p[:, 0, :].clone()
    for i in range(1, t_max):  # target order, as the CPU sums
        total = total + p[:, i, :]
    uniform = (1.0 / targets.to(dtype))[:, None, None]
    norm = torch.where(total[:, None, :] > 0, p / total[:, None, :], uniform)
    norm = torch.where(ok, norm, torch.zeros((), dtype=dtype, device=dev))

    # 2. Supplies: ceil of each real row's top-k sum (largest first); the null row gets the rest,
    #    and when that is negative real rows give back one each by slack, cycling, never below 1.
    k = torch.clamp(slots, max=top_k)  # [n]
    ranked = torch.where(col_ok[:, None, :], norm, torch.full((), -1.0, dtype=dtype, device=dev))
    ranked = torch.sort(ranked, dim=2, descending=True).values
    raw = torch.zeros(n, t_max, dtype=dtype, device=dev)
    for r in range(min(top_k, s_max)):
        raw = raw + torch.where((r < k)[:, None], ranked[:, :, r], torch.zeros((), dtype=dtype, device=dev))
    null_idx = targets - 1
    real = torch.where(has_null, targets - 1, targets)
    is_real = rows[None, :] < real[:, None]
    sup = torch.where(is_real, torch.ceil(raw), torch.zeros((), dtype=dtype, device=dev))
    left = slots - sup.sum(dim=1).to(torch.long)  # [n]
    null_sup = torch.clamp(left, min=0).to(dtype)
    sup = torch.where(
        has_null[:, None] & (rows[None, :] == null_idx[:, None]), null_sup[:, None], sup
    )
    sup = torch.where(has_null[:, None], sup, row_ok.to(dtype))
    left = torch.where(has_null, left, torch.zeros_like(left))
    if bool((left < 0).any()):
        slack = torch.where(is_real, sup - raw, torch.full((), -float("inf"), dtype=dtype, device=dev))
        order = torch.sort(-slack, dim=1, stable=True).indices  # slack descending, index ascending
        batch = torch.arange(n, device=dev)
        while bool((left < 0).any()):
            for pos in range(t_max):
                i = order[:, pos]
                give = (left < 0) & (pos < real) & (sup[batch, i] >= 2)
                sup[batch, i] = sup[batch, i] - give.to(dtype)
                left = left + give.to(torch.long)

    # 4. Log-domain Sinkhorn from u = v = 1, v before u; padded entries are -inf in M.
    neg_inf = torch.full((), -float("inf"), dtype=dtype, device=dev)
    log_a = torch.log(sup + 1e-8)
    log_b = torch.log(torch.ones((), dtype=dtype, device=dev) + 1e-8)
    u = torch.ones(n, t_max, dtype=dtype, device=dev)
    v = torch.ones(n, s_max, dtype=dtype, device=dev)

    def m():
        return torch.where(ok, ((norm + u[:, :, None]) + v[:, None, :]) / eps, neg_inf)

    for _ in range(iters):
        v = torch.where(col_ok, v + eps * (log_b - torch.logsumexp(m(), dim=1)), v)
        u = torch.where(row_ok, u + eps * (log_a - torch.logsumexp(m(), dim=2)), u)
    plan = torch.exp(m())
    return sup, plan, torch.argmax(plan, dim=1)  # the first maximum: the lowest target index


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", required=True, help="JSON written by kpg bench ot --dump")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                    help="float64 as kpg and the CPU reference (default)")
    ap.add_argument("--repeats", type=int, default=20, help="timed runs (the median is reported)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--check", type=int, default=0, metavar="N",
                    help="compare the first N problems with tools/ot_reference.py")
    args = ap.parse_args()
    with open(args.problems, encoding="utf-8") as f:
        doc = json.load(f)
    params = dict(tau=doc.get("tau", 10.0), top_k=doc.get("top_k", 3), eps=doc.get("eps", 1e-3),
                  iters=doc.get("iters", 100))
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    score, targets, slots, has_null = pad_problems(doc, device, dtype)
    with torch.no_grad():
        for _ in range(args.warmup):
            out = assign(score, targets, slots, has_null, **params)
        sync(device)
        times = []
        for _ in range(max(1, args.repeats)):
            start = time.perf_counter()
            out = assign(score, targets, slots, has_null, **params)
            sync(device)
            times.append(time.perf_counter() - start)
    sup, plan, chosen = out
    n = len(doc["problems"])
    slot_ok = torch.arange(chosen.shape[1], device=device)[None, :] < slots[:, None]
    assign_sum = int(torch.where(slot_ok, chosen, torch.zeros_like(chosen)).sum().item())
    seconds = statistics.median(times)
    result = {
        "bench": "ot",
        "peer": "torch batched log-domain sinkhorn",
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": args.dtype,
        "problems": n,
        "iters": params["iters"],
        "repeats": len(times),
        "seconds": seconds,
        "seconds_min": min(times),
        "problems_per_s": n / seconds,
        "assign_sum": assign_sum,
    }
    if args.check:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import ot_reference

        bad_assign = bad_supply = 0
        checked = min(args.check, n)
        for k in range(checked):
            p = doc["problems"][k]
            ref = ot_reference.ot_assign(p["score"], p["has_null"], **params)
            t, s = len(p["score"]), len(p["score"][0])
            bad_assign += chosen[k, :s].tolist() != ref["assign"]
            bad_supply += sup[k, :t].tolist() != ref["supply"]
        result.update(checked=checked, assign_mismatches=bad_assign, supply_mismatches=bad_supply)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
