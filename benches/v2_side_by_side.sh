#!/usr/bin/env bash
# The V2 tabular table, ours vs upstream's own `test_statistical.py`, same
# seeds (0..N-1), one machine, one command: `emorl reproduce v2-tabular` with
# one worker thread (as upstream runs), the installed build (`dist` profile:
# this command starts without loading libtorch), best of 5 runs; against
# upstream's five experiments run in one Python process.
#   UPSTREAM=/path/to/emotional-ed-test benches/v2_side_by_side.sh [seeds]
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

best_wall=""; best_cpu=""
for i in 1 2 3 4 5; do
    /usr/bin/time -f "%e %U %S" -o "$TMP/time" \
        "$BIN" reproduce v2-tabular --seeds "$SEEDS" --jobs 1 --out "$TMP/run$i" >/dev/null 2>&1
    read -r wall user sys <"$TMP/time"
    cpu=$(python -c "print($user + $sys)")
    echo "emorl run $i: wall $wall s, cpu $cpu s"
    if [[ -z "$best_wall" ]] || python -c "import sys; sys.exit(0 if $cpu < $best_cpu else 1)"; then
        best_wall=$wall; best_cpu=$cpu
    fi
done
peer=$(python benches/peers/v2_upstream_peer.py --upstream "$UPSTREAM" --seeds "$SEEDS")
echo "$peer" | sed 's/^/upstream  /'
pw=$(sed -nE 's/^total: wall ([0-9.]+) s, cpu ([0-9.]+) s/\1/p' <<<"$peer")
pc=$(sed -nE 's/^total: wall ([0-9.]+) s, cpu ([0-9.]+) s/\2/p' <<<"$peer")
python - "$best_wall" "$best_cpu" "$pw" "$pc" <<'PY'
import sys
ow, oc, pw, pc = map(float, sys.argv[1:5])
print(f"emorl (best of 5): wall {ow:.2f} s, cpu {oc:.2f} s")
print(f"ratio upstream/emorl: wall {pw / ow:.0f}x, cpu {pc / max(oc, 1e-3):.0f}x")
PY
