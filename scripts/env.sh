# Source this file to build emorl by hand: `source scripts/env.sh && cargo build`.
# It points the libtorch build (tch/torch-sys, LIBTORCH_USE_PYTORCH=1) at the
# Python environment that scripts/setup.sh creates under the cache directory.
EMORL_CACHE="${EMORL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/emorl}"
export EMORL_CACHE
export VIRTUAL_ENV="$EMORL_CACHE/venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
export EMORL_PYTHON="$VIRTUAL_ENV/bin/python"
