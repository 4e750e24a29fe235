#!/usr/bin/env bash
# The whole test suite: set-up (cached), the Python packages the tests use as
# independent references, then formatting, lints and every test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
export PIP_CACHE_DIR="$EMORL_CACHE/pip" PIP_DISABLE_PIP_VERSION_CHECK=1

# Independent references the tests compare against: real TensorBoard reads our
# event files, scipy checks our statistics, transformers + gguf compute
# reference logits and tokenisations for the language-model engine.
"$VIRTUAL_ENV/bin/python" -c "import tensorboard, scipy, transformers, gguf, safetensors, accelerate" 2>/dev/null \
  || "$VIRTUAL_ENV/bin/pip" install -q tensorboard scipy transformers gguf safetensors accelerate

cargo fmt --all --check
cargo clippy --release --locked --workspace --all-targets -- -D warnings
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --release --locked --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over all test binaries (cargo prints one per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "emorl: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
