#!/usr/bin/env bash
# DQN learning speed, ours vs a CleanRL-style PyTorch peer, on the Exp 16b grid:
# same network, hyperparameters and environment, one torch thread each, env steps/s.
#   benches/dqn_side_by_side.sh [total_steps] [seed]
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${1:-20000}"
SEED="${2:-0}"
source scripts/env.sh
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

cargo build --release -q -p emorl-agents-dqn --example dqn_sps
BIN="${CARGO_TARGET_DIR:-target}/release/examples/dqn_sps"

ours=$("$BIN" "$STEPS" dqn "$SEED")
peer=$(python benches/peers/dqn_peer.py --total-steps "$STEPS" --seed "$SEED")
echo "rust (host):     $ours"
echo "python (torch):  $peer"
sps() { sed -E 's/.*sps=([0-9.]+).*/\1/' <<<"$1"; }
python - "$(sps "$ours")" "$(sps "$peer")" <<'PY'
import sys
ours, peer = map(float, sys.argv[1:3])
print(f"ratio rust/python: {ours / peer:.2f}x")
PY
