#!/usr/bin/env bash
# The whole test suite: set-up (cached), the Python packages the tests use as
# independent references, then formatting, lints and every test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
export PIP_CACHE_DIR="$EMORL_CACHE/pip" PIP_DISABLE_PIP_VERSION_CHECK=1

# Reference implementations used by tests: real TensorBoard reads our event
# files; scipy checks our statistics.
"$VIRTUAL_ENV/bin/python" -c "import tensorboard, scipy" 2>/dev/null \
  || "$VIRTUAL_ENV/bin/pip" install -q tensorboard scipy

cargo fmt --all --check
cargo clippy --release --locked --workspace --all-targets -- -D warnings
cargo test --release --locked --workspace
