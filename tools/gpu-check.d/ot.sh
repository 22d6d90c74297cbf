# OT target assignment (kpg issue 7): kpg's one-launch CUDA solver (kernels/sinkhorn.cu) against
# the batched PyTorch log-domain Sinkhorn (tools/peer_ot_torch.py) on the same GPU and the
# authors' per-example NumPy way (tools/peer_ot.py), on the same 4096 problems of 11 x 10 and of
# 21 x 20, 100 iterations. Sourced by tools/gpu-check.sh with $KPG, $OUT, $PY; set -euo pipefail.
# Bar: kpg at least 50x the PyTorch peer at 11 x 10.

ot_dir="$OUT/ot"
mkdir -p "$ot_dir"

# gpu-check.sh has run the whole selftest already (SELFTEST_DONE); run standalone, check first.
if [ -z "${SELFTEST_DONE:-}" ]; then
    if "$KPG" selftest --device cuda --filter sinkhorn >"$ot_dir/selftest.txt" 2>&1; then
        echo "ot selftest (sinkhorn): $(tail -n 1 "$ot_dir/selftest.txt")" >>"$OUT/summary.txt"
    else
        echo "ot selftest (sinkhorn): FAILED, see ot/selftest.txt: $(tail -n 1 "$ot_dir/selftest.txt")" >>"$OUT/summary.txt"
    fi
fi

for shape in 11x10 21x20; do
    targets=${shape%x*}
    slots=${shape#*x}
    tag="4096x$shape"
    problems="$ot_dir/problems_$tag.json"
    "$KPG" bench ot --device cuda --problems 4096 --targets "$targets" --slots "$slots" \
        --repeats 50 --dump "$problems" >"$ot_dir/kpg_cuda_$tag.json"
    "$KPG" bench ot --device cpu --problems 4096 --targets "$targets" --slots "$slots" \
        --repeats 3 >"$ot_dir/kpg_cpu_$tag.json"
    "$PY" tools/peer_ot_torch.py --problems "$problems" --device cuda --dtype float64 \
        --repeats 20 >"$ot_dir/torch_f64_$tag.json"
    "$PY" tools/peer_ot_torch.py --problems "$problems" --device cuda --dtype float32 \
        --repeats 20 >"$ot_dir/torch_f32_$tag.json"
    "$PY" tools/peer_ot.py --problems "$problems" >"$ot_dir/numpy_$tag.json"
    "$PY" - "$ot_dir" "$tag" >>"$OUT/summary.txt" <<'PYEOF'
import json, sys
d, tag = sys.argv[1], sys.argv[2]
def load(name):
    with open(f"{d}/{name}_{tag}.json") as f:
        return json.loads(f.read().strip().splitlines()[-1])
k, c = load("kpg_cuda"), load("kpg_cpu")
t64, t32, npy = load("torch_f64"), load("torch_f32"), load("numpy")
kp = k["problems_per_s"]
bar = " (bar 50x)" if tag.endswith("11x10") else ""
print(
    f"ot {tag}: kpg cuda {kp:.3g} problems/s (kernel median; {k['problems_per_s_with_transfers']:.3g} "
    f"with transfers; {100 * k['floor_share']:.2g}% of the memory-bound floor at "
    f"{k['copy_bytes_per_s'] / 1e9:.0f} GB/s), torch f64 {t64['problems_per_s']:.3g} "
    f"({kp / t64['problems_per_s']:.1f}x){bar}, torch f32 {t32['problems_per_s']:.3g} "
    f"({kp / t32['problems_per_s']:.1f}x), numpy per example {npy['problems_per_s']:.3g} "
    f"({kp / npy['problems_per_s']:.0f}x), kpg cpu {c['problems_per_s']:.3g} "
    f"({kp / c['problems_per_s']:.1f}x); assign_sum kpg {k['assign_sum']} cpu {c['assign_sum']} "
    f"torch {t64['assign_sum']} numpy {npy['assign_sum']}; slots differing from cpu "
    f"{k['slots_differing_from_cpu']}"
)
PYEOF
done

# kpg debug ot --device cuda against the CPU on the reference fixtures: the same output.
for name in problems problems_params; do
    "$KPG" debug ot --input "tests/fixtures/ot/$name.json" >"$ot_dir/debug_cpu_$name.json"
    "$KPG" debug ot --device cuda --input "tests/fixtures/ot/$name.json" >"$ot_dir/debug_cuda_$name.json"
    "$PY" - "$ot_dir/debug_cpu_$name.json" "$ot_dir/debug_cuda_$name.json" "$name" >>"$OUT/summary.txt" <<'PYEOF'
import json, sys
cpu, gpu = (json.load(open(p))["results"] for p in sys.argv[1:3])
bad_assign = sum(c["assign"] != g["assign"] for c, g in zip(cpu, gpu))
bad_supply = sum(c["supply"] != g["supply"] for c, g in zip(cpu, gpu))
worst = 0.0
for c, g in zip(cpu, gpu):
    for rc, rg in zip(c["plan"], g["plan"]):
        for a, b in zip(rc, rg):
            worst = max(worst, abs(a - b) / (1e-9 + 1e-6 * abs(a)))
ok = len(cpu) == len(gpu) and bad_assign == 0 and bad_supply == 0 and worst <= 1
print(f"ot debug --device cuda vs cpu on {sys.argv[3]}.json: {len(gpu)} problems, "
      f"{bad_assign} assignments and {bad_supply} supplies differ, plan worst/tol {worst:.3g}: "
      f"{'ok' if ok else 'FAIL'}")
PYEOF
done
