# Paged attention (kernels/paged_attention.cu): the selftest rows, then decode at LLaMA-2-7B's
# shape (32 heads, head_dim 128; GQA 1 and a GQA-8 variant) at a few (batch x context), each
# against the device-to-device copy ceiling measured in the same run (bar: 70% of it), and one
# prefill chunk. Sourced by tools/gpu-check.sh ($KPG, $OUT, $PY; set -euo pipefail is on).
attn_out="$OUT/attention"
mkdir -p "$attn_out"

# gpu-check.sh has run the whole selftest already (SELFTEST_DONE); run standalone, check first.
if [ -z "${SELFTEST_DONE:-}" ]; then
    if "$KPG" selftest --device cuda --filter "paged attention" >"$attn_out/selftest.txt" 2>&1; then
        echo "attention selftest: $(tail -1 "$attn_out/selftest.txt")" >>"$OUT/summary.txt"
    else
        echo "attention selftest: FAILED ($(tail -1 "$attn_out/selftest.txt")), see attention/selftest.txt" \
            >>"$OUT/summary.txt"
    fi
fi

# One summary row from a bench JSON line.
attn_row() {
    "$PY" - "$1" "$2" <<'PYEOF'
import json, sys
label, path = sys.argv[1], sys.argv[2]
r = json.loads(open(path).read().strip().splitlines()[-1])
if r["mode"] == "decode":
    bar = "ok" if r["share_of_copy"] >= 0.70 else "BELOW BAR"
    print(f"attention {label}: {r['seconds']*1e6:.1f} us, {r['gbps']:.0f} GB/s of K/V, "
          f"{100*r['share_of_copy']:.0f}% of copy {r['copy_gbps']:.0f} GB/s (bar 70%: {bar}), "
          f"splits {r['plan']['splits']}")
else:
    print(f"attention {label}: {r['seconds']*1e3:.2f} ms, {r['tflops']:.1f} TFLOP/s, "
          f"{r['tokens_per_s']:.3g} tokens/s")
PYEOF
}

for bl in 1x4096 16x2048 64x1024 128x512; do
    b="${bl%x*}"
    l="${bl#*x}"
    for kv in 32 4; do
        f="$attn_out/decode-${bl}-kv${kv}.json"
        if "$KPG" bench attention --device cuda --mode decode --batch "$b" --context "$l" \
            --kv-heads "$kv" --repeats 50 --copy-mib 2048 --naive >"$f" 2>"$f.err"; then
            attn_row "decode ${bl} gqa$((32 / kv))" "$f" >>"$OUT/summary.txt"
        else
            echo "attention decode ${bl} gqa$((32 / kv)): FAILED ($(tail -1 "$f.err"))" >>"$OUT/summary.txt"
        fi
    done
done

f="$attn_out/prefill-1x2048.json"
if "$KPG" bench attention --device cuda --mode prefill --batch 1 --context 2048 --chunk 2048 \
    --repeats 20 --copy-mib 2048 >"$f" 2>"$f.err"; then
    attn_row "prefill 1x2048 gqa1" "$f" >>"$OUT/summary.txt"
else
    echo "attention prefill 1x2048 gqa1: FAILED ($(tail -1 "$f.err"))" >>"$OUT/summary.txt"
fi
