"""Runs kernels/sinkhorn.cu's gather entry under the host emulation on random decoder distributions
and compares the scores with Dists::prob's f32 formula (bitwise) and the results with `kpg debug ot`
on those scores.

    python tools/sinkhorn_emu/gather.py EMU KPG TMP_JSON
"""
import json, subprocess, random, sys
import numpy as np
EMU, KPG, TMP = sys.argv[1:4]
f32 = np.float32
rng = random.Random(3)
docs, codes, present, vocab, oov, steps = 7, 20, 10, 50, 6, 2
rows = docs * codes * steps
probs = []; p_gen = []; head0 = []; src = []; cr = []; doc_src = []
for d in range(docs):
    n = 3 + rng.randrange(30); doc_src.append((len(src), n)); src += [rng.randrange(vocab + oov) for _ in range(n)]
for r in range(rows):
    sa, n = doc_src[r // (codes * steps)]
    p = np.array([rng.random() ** 6 for _ in range(vocab)], dtype=f32); p = (p / p.sum()).astype(f32); probs += p.tolist()
    p_gen.append(float(f32(0.05 + 0.9 * rng.random())))
    a = np.array([rng.random() + 1e-3 for _ in range(n)], dtype=f32); a = (a / a.sum()).astype(f32)
    cr.append((len(head0), sa, n)); head0 += a.tolist()
probs32 = np.array(probs, dtype=f32); pg32 = np.array(p_gen, dtype=f32); h32 = np.array(head0, dtype=f32)
def prob(row, w):
    ha, sa, n = cr[row]
    mass = f32(0)
    for k in range(n):
        if src[sa + k] == w: mass = f32(mass + h32[ha + k])
    pv = probs32[row * vocab + w] if w < vocab else f32(0)
    pg = pg32[row]
    return f32(f32(pg * pv) + f32(f32(f32(1) - pg) * mass))
problems = []; lines_p = []; doc_problems = []
for d in range(docs):
    sa, n = doc_src[d]
    for first, slots in [(0, present), (present, codes - present)]:
        real = rng.randint(0, slots); has_null = real < slots; t = real + has_null
        ids = []
        for _ in range(real):
            for _ in range(steps):
                ids.append(src[sa + rng.randrange(n)] if rng.random() < 0.5 else rng.randrange(vocab + oov))
        if has_null: ids += [6, 0]
        fr = (d * codes + first) * steps
        score = [[float(sum(float(prob(fr + j * steps + k, ids[i * steps + k])) for k in range(steps))) for j in range(slots)] for i in range(t)]
        problems.append({"score": score, "has_null": has_null})
        lines_p.append(f"{t} {slots} {int(has_null)} {fr} " + " ".join(map(str, ids)))
fmt = lambda xs: " ".join(repr(float(x)) for x in xs)
text = "\n".join([f"{rows} {vocab} {steps}", fmt(probs32), fmt(pg32), f"{len(head0)} " + fmt(h32), f"{len(src)} " + " ".join(map(str, src)),
                  " ".join(f"{a} {b} {c}" for a, b, c in cr), f"{len(problems)} 10.0 3 0.001 100"] + lines_p)
emu = json.loads(subprocess.run([EMU, "gather"], input=text, capture_output=True, text=True, check=True).stdout)
want_scores = [x for p in problems for row in p["score"] for x in row]
bad_scores = sum(a != b for a, b in zip(emu["scores"], want_scores))
json.dump({"problems": problems}, open(TMP, "w"))
cpu = json.loads(subprocess.run([KPG, "debug", "ot", "--input", TMP], capture_output=True, text=True, check=True).stdout)["results"]
ba = sum(e["assign"] != c["assign"] for e, c in zip(emu["results"], cpu))
bs = sum(e["supply"] != c["supply"] for e, c in zip(emu["results"], cpu))
print(f"gather: {len(want_scores)} scores, {bad_scores} differ bitwise; {len(cpu)} problems, assign differ {ba}, supply differ {bs}")
sys.exit(0 if bad_scores == 0 and ba == 0 and bs == 0 else 1)
