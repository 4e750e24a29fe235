#!/usr/bin/env bash
# The V3 table, ours vs upstream's own scripts, same seeds (0..N-1), one
# machine, one command: `emorl reproduce v3` with one worker thread (as
# upstream runs) and with every core, against upstream's six scripts run in
# one Python process (numpy's legacy generator, as published).
#   UPSTREAM=/path/to/emotional-ed-test benches/v3_side_by_side.sh [seeds]
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS="${1:-50}"
if [[ -z "${UPSTREAM:-}" ]]; then
    echo "set UPSTREAM to a checkout of https://github.com/hz1ulqu01gmnZH4/emotional-ed-test" >&2
    exit 2
fi
source scripts/env.sh
cargo build --profile dist -q --bin emorl --bin emorl-torch
BIN="${CARGO_TARGET_DIR:-target}/dist/emorl"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

run_ours() { # jobs out
    /usr/bin/time -f "%e %U %S" -o "$TMP/time-$1" \
        "$BIN" reproduce v3 --seeds "$SEEDS" --jobs "$1" --out "$TMP/$2" >/dev/null 2>&1
    read -r wall user sys <"$TMP/time-$1"
    echo "$wall $(python -c "print($user + $sys)")"
}
read -r w1 c1 < <(run_ours 1 one)
read -r wn cn < <(run_ours 0 all)
peer=$(python benches/peers/v3_upstream_peer.py --upstream "$UPSTREAM" --seeds "$SEEDS")
echo "$peer" | sed 's/^/upstream  /'
pw=$(sed -nE 's/^total: wall ([0-9.]+) s, cpu ([0-9.]+) s/\1/p' <<<"$peer")
pc=$(sed -nE 's/^total: wall ([0-9.]+) s, cpu ([0-9.]+) s/\2/p' <<<"$peer")
echo "emorl reproduce v3 --seeds $SEEDS --jobs 1: wall ${w1} s, cpu ${c1} s"
echo "emorl reproduce v3 --seeds $SEEDS (all $(nproc) cores): wall ${wn} s, cpu ${cn} s"
python - "$pw" "$pc" "$w1" "$c1" "$wn" <<'PY'
import sys
pw, pc, w1, c1, wn = map(float, sys.argv[1:6])
print(f"ratio upstream/emorl: {pw / w1:.0f}x wall and {pc / c1:.0f}x CPU at one thread; {pw / wn:.0f}x wall on all cores")
PY
