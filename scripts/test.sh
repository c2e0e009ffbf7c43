#!/usr/bin/env bash
# README command 2: create/reuse .venv, install, start what the tests need, run the whole suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m "not slow"`).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
source scripts/setup_env.sh
export RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
# One intra-op thread per process: the tests run several processes (DDP ranks, SLURM tasks, Ray
# trials) on few cores, where OpenMP threads spin-waiting on each other cost up to 10x.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# DeepSpeed compiles a communication op on first use: keep the build between runs.
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$HOME/.cache/torch_extensions}
if [ -d tests/slurm ] && [ -f slurm/local-cluster/up.sh ] && [ "$(id -u)" = 0 ]; then
  bash slurm/local-cluster/up.sh
  trap 'bash slurm/local-cluster/down.sh' EXIT   # leave no daemons or jobs behind
  export SLURM_CONF=${SLURM_DIR:-/tmp/face-slurm}/slurm.conf
fi
python -m pytest "$@"
