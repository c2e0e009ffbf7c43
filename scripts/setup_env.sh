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
export PATH="$venv/bin:$PATH" VIRTUAL_ENV="$venv"
