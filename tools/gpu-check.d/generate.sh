# One2Set parallel control-code decoding on the GPU (kpg issue 7): kpg --device cuda against the
# PyTorch reference generator at its best settings (tools/peer_generate_gpu.py: bf16, batched over
# documents and slots) on the same documents, and against the floor from the workload's FLOPs and
# bytes and the measured ceilings. Base preset, 4096 documents of 200-400 tokens.
# Sourced by tools/gpu-check.sh with $KPG, $OUT, $PY set; cwd = repo root.
# A failing step writes a FAILED row and leaves the other fragments to run (errexit does not hold
# inside a function called from `||`, hence the explicit returns).
G="$OUT/generate"
mkdir -p "$G"

generate_check() {
"$KPG" synth --arch one2set --preset base --dtype bf16 --seed 3 --out "$G/base" >"$G/synth.log" 2>&1 || return 1

# Documents of 200-400 source tokens: words of the model's vocabulary (frequent ones more often)
# with about one in seven made up, so that the copy mechanism has out-of-vocabulary words to copy.
"$PY" - "$G/base/tokenizer.json" "$G/docs.jsonl" <<'PYEOF' || return 1
import json, random, sys
vocab = json.load(open(sys.argv[1]))["model"]["vocab"]
words = [w for w, i in sorted(vocab.items(), key=lambda x: x[1]) if i >= 7 and w.isalpha()][:20000]
rng = random.Random(7)
with open(sys.argv[2], "w") as f:
    for i in range(4096):
        n = rng.randint(200, 400) - 10  # the title and ". <eos>" make up the rest
        pick = lambda: (f"zq{rng.randint(0, 999)}" if rng.random() < 0.14
                        else words[int(len(words) ** rng.random()) - 1])  # log-uniform rank: Zipf-like
        title = " ".join(pick() for _ in range(8))
        abstract = " ".join(pick() for _ in range(n))
        f.write(json.dumps({"id": f"g{i}", "title": title, "abstract": abstract}) + "\n")
PYEOF

"$KPG" bench generate --generator "$G/base" --input "$G/docs.jsonl" --docs 4096 --device cuda \
    --batch-docs 1024 --repeats 3 --dump "$G/kpg-dump.jsonl" >"$G/kpg.json" 2>"$G/kpg.log" || return 1
CHECK=""
if "$PY" -c "import nltk" 2>/dev/null; then CHECK="--check"; fi
"$PY" tools/peer_generate_gpu.py --generator "$G/base" --dump "$G/kpg-dump.jsonl" --device cuda \
    --dtype bf16 --batch-docs 512 --repeats 3 $CHECK >"$G/torch.json" 2>"$G/torch.log" || return 1

# Ceilings: kpg's own (`kpg bench ceilings`, when this kpg has it) and, always, torch's
# (a large bf16 GEMM, a large device copy); the summary uses kpg's when it can read them.
"$KPG" bench ceilings >"$G/ceilings-kpg.json" 2>"$G/ceilings-kpg.log" || true
"$PY" - >"$G/ceilings-torch.json" <<'PYEOF' || return 1
import json, time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
for _ in range(3): a @ b
torch.cuda.synchronize(); t = time.perf_counter()
for _ in range(20): a @ b
torch.cuda.synchronize(); gemm = 20 * 2 * 8192**3 / (time.perf_counter() - t) / 1e12
x = torch.empty(2 << 30, dtype=torch.uint8, device="cuda"); y = torch.empty_like(x)
for _ in range(3): y.copy_(x)
torch.cuda.synchronize(); t = time.perf_counter()
for _ in range(20): y.copy_(x)
torch.cuda.synchronize(); copy = 20 * 2 * x.numel() / (time.perf_counter() - t) / 1e9
print(json.dumps({"source": "torch", "bf16_gemm_tflops": gemm, "copy_gb_per_s": copy}))
PYEOF

"$PY" - "$G/kpg.json" "$G/torch.json" "$G/ceilings-kpg.json" "$G/ceilings-torch.json" \
    >"$G/summary.txt" <<'PYEOF' || return 1
import json, sys
last = lambda path: json.loads(open(path).read().strip().splitlines()[-1])
kpg, peer = last(sys.argv[1]), last(sys.argv[2])
def find(d, *keys):
    for k in keys:
        if k in d: return float(d[k])
    raise KeyError(f"none of {keys} in {d}")
def ceilings(path):
    c = last(path)
    return (find(c, "bf16_gemm_tflops", "gemm_tflops", "gemm_bf16_tflops") * 1e12,
            find(c, "copy_gb_per_s", "copy_gbps", "copy_gb_s") * 1e9, c.get("source", "kpg"))
try:
    tflops, gbps, source = ceilings(sys.argv[3])
except Exception:
    tflops, gbps, source = ceilings(sys.argv[4])
w = kpg["workload"]
floor = w["encoder_flops"] / tflops + max(w["decoder_flops"] / tflops, w["decoder_bytes"] / gbps)
secs = kpg["decode_seconds"]
ratio = kpg["decode_documents_per_s"] / peer["documents_per_s"]
n = kpg["docs"]
print(f"generate base {n} docs: kpg {kpg['decode_documents_per_s']:.0f} docs/s (decode; "
      f"{kpg['documents_per_s']:.0f} with host preprocessing), torch bf16 {peer['documents_per_s']:.0f}, "
      f"{ratio:.2f}x (bar 3x)")
print(f"generate base floor: {floor:.4f} s ({n / floor:.0f} docs/s; enc {w['encoder_flops']/1e12:.1f} TFLOP, "
      f"dec {w['decoder_flops']/1e12:.1f} TFLOP, {w['decoder_bytes']/1e9:.1f} GB; "
      f"{tflops/1e12:.0f} TFLOP/s, {gbps/1e9:.0f} GB/s from {source}), kpg {secs:.4f} s = {secs/floor:.2f}x floor (bar 2x); "
      f"same candidates as torch: {peer.get('same_candidates_as_kpg')}")
PYEOF
cat "$G/summary.txt" >>"$OUT/summary.txt"
}

generate_check || echo "generate: FAILED (logs in $G)" >>"$OUT/summary.txt"
