#!/usr/bin/env bash
# DQN learning speed, ours (host backend, the default; and the libtorch backend)
# vs a CleanRL-style PyTorch peer, on the Exp 16b grid: same network,
# hyperparameters and environment, one thread each, env steps/s.
#   benches/dqn_side_by_side.sh [total_steps] [seed]
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${1:-20000}"
SEED="${2:-0}"
source scripts/env.sh
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

cargo build --release -q -p emorl-agents-dqn --example dqn_sps
BIN="${CARGO_TARGET_DIR:-target}/release/examples/dqn_sps"

ours=$("$BIN" "$STEPS" dqn "$SEED" host)
tch=$("$BIN" "$STEPS" dqn "$SEED" libtorch)
peer=$(python benches/peers/dqn_peer.py --total-steps "$STEPS" --seed "$SEED")
echo "rust (host, the default): $ours"
echo "rust (libtorch backend):  $tch"
echo "python (torch):           $peer"
sps() { sed -E 's/.*sps=([0-9.]+).*/\1/' <<<"$1"; }
python - "$(sps "$ours")" "$(sps "$tch")" "$(sps "$peer")" <<'PY'
import sys
ours, tch, peer = map(float, sys.argv[1:4])
print(f"ratio host/python: {ours / peer:.2f}x   libtorch backend/python: {tch / peer:.2f}x")
PY
