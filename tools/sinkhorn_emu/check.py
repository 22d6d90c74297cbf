"""Runs kernels/sinkhorn.cu's solver under the host emulation on a `kpg debug ot` input and compares
it with `kpg debug ot` on the CPU: assignments and supplies equal, plans within 1e-9 + 1e-6|ref|.

    python tools/sinkhorn_emu/check.py EMU KPG problems.json
"""
import json, subprocess, sys
EMU, KPG, path = sys.argv[1:4]
doc = json.load(open(path))
P = doc["problems"]
lines = [f"{len(P)} {doc.get('tau',10.0)!r} {doc.get('top_k',3)} {doc.get('eps',1e-3)!r} {doc.get('iters',100)}"]
for p in P:
    t, s = len(p["score"]), len(p["score"][0])
    lines.append(f"{t} {s} {int(p['has_null'])} " + " ".join(repr(float(x)) for row in p["score"] for x in row))
emu = json.loads(subprocess.run([EMU], input="\n".join(lines), capture_output=True, text=True, check=True).stdout)["results"]
cpu = json.loads(subprocess.run([KPG, "debug", "ot", "--input", path], capture_output=True, text=True, check=True).stdout)["results"]
ba = bs = 0; worst = 0.0
for k, (e, c) in enumerate(zip(emu, cpu)):
    if e["assign"] != c["assign"]:
        ba += 1
        if ba < 4: print("assign", k, e["assign"], c["assign"])
    if e["supply"] != c["supply"]:
        bs += 1
        if bs < 4: print("supply", k, e["supply"], c["supply"])
    cp = [x for row in c["plan"] for x in row]
    for a, b in zip(e["plan"], cp):
        worst = max(worst, abs(a - b) / (1e-9 + 1e-6 * abs(b)))
ok = len(emu) == len(cpu) and ba == 0 and bs == 0 and worst <= 1
print(f"{path}: {len(emu)} vs {len(cpu)} problems, assign differ {ba}, supply differ {bs}, plan worst/tol {worst:.3g}: {'ok' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
