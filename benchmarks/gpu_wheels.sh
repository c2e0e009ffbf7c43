#!/usr/bin/env bash
# Download the few wheels benchmarks/gpu_check.py needs on the borrowed GPU machine (Python 3.12,
# x86-64, torch/lightning/timm already there, nothing downloadable) into .whl/ (git-ignored).
# There: python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p .whl
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" -d .whl \
  simplejpeg==1.9.0 webdataset==1.0.2 braceexpand==0.1.7 jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0
ls -la .whl
