#!/usr/bin/env bash
# Wall time of one RL update (8 prompts x 4 samples x 32 new tokens, llm-erm or llm-reft),
# ours (emorl, tch) vs the same update in PyTorch + transformers
# (benches/peers/rl_update_peer.py), same prompts (dumped from Rust), same
# stand-in reward (fraction of response token ids divisible by 7), one torch
# thread each by default. Median of UPDATES updates, the first (warm-up) excluded.
#   benches/llm_update_side_by_side.sh [model|all] [updates] [threads] [--recompute]
# model: a GGUF path, "stories" (stories260K), "smol" (SmolLM2-135M, the
# default model) or "all" (both, the default). --recompute: both sides
# recompute the log-probabilities with full forwards (the reference path).
# SAMPLING_GROUPS=N (env): our sampling in N length-sorted batches (RlConfig::sampling_groups).
# MODULE=reft (env): llm-reft (rank-4 interventions on hidden states at two
# blocks; both sides recompute, the learning pass backpropagates through the
# upper blocks) instead of llm-erm.
# SHARE_PREFILL=0 (env): our sampling prefills every row, instead of each prompt
# once for its 4 samples (RlConfig::share_prompt_prefill, on by default).
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH="${1:-all}"
UPDATES="${2:-4}"
THREADS="${3:-1}"
EXTRA="${4:-}"
MODULE="${MODULE:-erm}"
KIND="llm-$MODULE"
source scripts/env.sh
export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
STORIES="${EMORL_STORIES:-$(pwd)/../shared/models/stories260k-f32.gguf}"
SMOL="${EMORL_SMOLLM2:-$EMORL_CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
case "$WHICH" in
  all) MODELS=("$STORIES" "$SMOL") ;;
  stories) MODELS=("$STORIES") ;;
  smol) MODELS=("$SMOL") ;;
  *) MODELS=("$WHICH") ;;
esac

cargo build --release -q -p emorl-agents-llm --example update_time
BIN="${CARGO_TARGET_DIR:-target}/release/examples/update_time"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
RECOMPUTE=()
[ "$EXTRA" = "--recompute" ] && RECOMPUTE=(--recompute)
SHARE=()
[ "${SHARE_PREFILL:-1}" = "0" ] && SHARE=(--no-share-prefill)

echo "machine: $(getconf _NPROCESSORS_ONLN) cores, $(uptime | sed 's/.*load/load/')"
for M in "${MODELS[@]}"; do
  echo "== $(basename "$M"), $KIND: $UPDATES updates, torch threads $THREADS ${RECOMPUTE[*]:-}"
  "$BIN" "$M" "$KIND" "$UPDATES" --dump-prompts "$TMP/prompts.json" >/dev/null
  "$BIN" "$M" "$KIND" "$UPDATES" --stand-in-reward --json --groups "${SAMPLING_GROUPS:-1}" "${RECOMPUTE[@]}" "${SHARE[@]}" | tee "$TMP/ours.txt" | grep -v '^{'
  python benches/peers/rl_update_peer.py --prompts "$TMP/prompts.json" --model "$M" \
    --updates "$UPDATES" --threads "$THREADS" --module "$MODULE" "${RECOMPUTE[@]}" 2>/dev/null | tee "$TMP/peer.txt" | grep -v '^{'
  python - "$TMP/ours.txt" "$TMP/peer.txt" <<'PY'
import json, sys
last = lambda p: json.loads([l for l in open(p) if l.startswith("{")][-1])
ours, peer = last(sys.argv[1]), last(sys.argv[2])
print(f"rust  (tch):             {ours['median_s']:.2f} s/update")
print(f"python (torch+HF):       {peer['median_s']:.2f} s/update")
print(f"ratio python/rust:       {peer['median_s'] / ours['median_s']:.2f}x")
PY
done
echo "load after: $(uptime | sed 's/.*load/load/')"
