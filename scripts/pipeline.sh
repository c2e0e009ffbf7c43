#!/usr/bin/env bash
# README command 1: create/reuse .venv, install, then run the whole pipeline on its built-in
# default: synthetic faces -> shards -> verify -> MAE pretraining (tiny ViT, CPU).
# Everything lands under runs/demo/.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
source scripts/setup_env.sh
export RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
demo=runs/demo
echo "[pipeline] results will be under $root/$demo"
