#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install the project into it.
# torch and torchvision are pinned by requirements/constraints-local.txt: the pair that installs
# from local disk and loads together on CPU-only machines (docs/install.md). On GPU nodes, install
# your own CUDA torch first and run `pip install -e .[dev]` instead.
# Usage: source scripts/setup_env.sh   (or bash scripts/setup_env.sh)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${FACE_VENV:-$root/.venv}
python=${PYTHON:-python3}
constraints=$root/requirements/constraints-local.txt

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
stamp=$venv/.face-foundation-installed
want=$(cat "$root/pyproject.toml" "$constraints" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing into $venv (first time: a few minutes)"
  "$venv/bin/python" -m pip install -q --upgrade pip wheel setuptools
  "$venv/bin/python" -m pip install -q -c "$constraints" torch torchvision
  "$venv/bin/python" -m pip install -q -c "$constraints" -e "$root[dev]"
  echo "$want" > "$stamp"
fi
# opencv-python (the face detector's image ops, `--faces detect`) loads libGL and libglib, which a
# bare Debian lacks: install them quietly, only when cv2 does not load, only as root with apt-get.
if ! "$venv/bin/python" -c "import cv2" 2>/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "[setup] installing libgl1 and libglib2.0 for opencv"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libgl1 libglib2.0-0 >/dev/null 2>&1 \
    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libgl1 libglib2.0-0t64 >/dev/null
fi
export PATH="$venv/bin:$PATH" VIRTUAL_ENV="$venv"
