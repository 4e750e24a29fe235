#!/usr/bin/env bash
# Prefill (128 tokens) and batch-1 decode speed of emorl-lm against llama.cpp
# (benches/peers/llama_cpp_peer.py) on the same GGUF, same thread count, run
# one after the other in this command; ours dense f32 and with the packed
# decode weights `emorl generate` uses by default (--weights auto), the
# latter with the decode glue as tensor operations and on the host (default).
#   benches/decode_side_by_side.sh [threads] [decode-steps] [model.gguf]
# Defaults: 2 threads, 64 decode steps, SmolLM2-135M-Instruct Q4_1.
# The peer needs llama-cpp-python; when missing it is built from PyPI's
# source package into the emorl venv (a C++ build: several minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${1:-2}"
STEPS="${2:-64}"
source scripts/env.sh
MODEL="${3:-${EMORL_SMOLLM2:-$EMORL_CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf}}"
LLAMA_CPP_PYTHON="llama-cpp-python==0.3.36"
export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"

if ! python -c "import llama_cpp" 2>/dev/null; then
  echo "installing $LLAMA_CPP_PYTHON (builds llama.cpp from source, several minutes) ..." >&2
  pip install -q diskcache jinja2
  # The instruction sets this CPU reports, without AMX: in a VM that lists
  # AMX but does not enable its tile state, llama.cpp's AMX kernels crash on
  # any prompt of more than one token.
  flags="$(grep -m1 '^flags' /proc/cpuinfo)"
  has() { [[ " $flags " == *" $1 "* ]] && echo ON || echo OFF; }
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=$(has avx) -DGGML_AVX2=$(has avx2) -DGGML_FMA=$(has fma) \
-DGGML_F16C=$(has f16c) -DGGML_AVX512=$(has avx512f) -DGGML_AVX512_VBMI=$(has avx512vbmi) \
-DGGML_AVX512_VNNI=$(has avx512_vnni) -DGGML_AVX512_BF16=$(has avx512_bf16) \
-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
  CMAKE_BUILD_PARALLEL_LEVEL="$(getconf _NPROCESSORS_ONLN)" pip install -q --no-deps "$LLAMA_CPP_PYTHON"
fi
cargo build --release -q -p emorl-lm --example bench
BIN="${CARGO_TARGET_DIR:-target}/release/examples/bench"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "machine: $(getconf _NPROCESSORS_ONLN) cores, $(uptime | sed 's/.*load/load/')"
echo "model: $(basename "$MODEL"), $THREADS threads, $STEPS decode steps"
"$BIN" "$MODEL" --decode-steps="$STEPS" | tee "$TMP/f32.json"
"$BIN" "$MODEL" --weights=auto --host-decode=off --decode-steps="$STEPS" | tee "$TMP/ops.json"
"$BIN" "$MODEL" --weights=auto --decode-steps="$STEPS" | tee "$TMP/auto.json"
python benches/peers/llama_cpp_peer.py "$MODEL" --threads "$THREADS" --decode-steps "$STEPS" | tee "$TMP/peer.json"
python - "$TMP" <<'PY'
import json, sys, os
d = sys.argv[1]
r = {k: json.load(open(os.path.join(d, k + ".json"))) for k in ("f32", "ops", "auto", "peer")}
peer = r["peer"]
print(f"{'':38s}{'prefill tok/s':>14s}{'decode tok/s':>14s}{'decode vs llama.cpp':>21s}{'batch-8 decode':>16s}")
rows = [
    ("emorl f32 (dense)", r["f32"]),
    (f"emorl {r['ops']['weights']}, tensor-op glue", r["ops"]),
    (f"emorl {r['auto']['weights']} (auto, host glue)", r["auto"]),
    (peer["engine"], peer),
]
for name, x in rows:
    ratio = x["decode_b1_tok_s"] / peer["decode_b1_tok_s"]
    b8 = f"{x['decode_b8_tok_s']:16.1f}" if "decode_b8_tok_s" in x else f"{'-':>16s}"
    print(f"{name:38s}{x['prefill_tok_s']:14.1f}{x['decode_b1_tok_s']:14.1f}{ratio:20.2f}x{b8}")
PY
echo "load after: $(uptime | sed 's/.*load/load/')"
