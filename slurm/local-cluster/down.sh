#!/usr/bin/env bash
# Stop what up.sh started, by pid file only (never by process name).
# Usage: bash slurm/local-cluster/down.sh [--purge]   (--purge also deletes $SLURM_DIR)
set -uo pipefail
SLURM_DIR=${SLURM_DIR:-/tmp/face-slurm}
export SLURM_CONF="$SLURM_DIR/slurm.conf"
stop() {  # stop <pidfile>...: SIGTERM all, wait up to 15 s, then SIGKILL what is left
  local pids="" f p
  for f in "$@"; do [ -s "$f" ] && p=$(cat "$f") && kill -0 "$p" 2>/dev/null && pids="$pids $p"; done
  [ -n "$pids" ] || return 0
  kill $pids 2>/dev/null
  for _ in $(seq 150); do
    local alive=""; for p in $pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
    [ -z "$alive" ] && return 0; sleep 0.1
  done
  kill -9 $alive 2>/dev/null
}
# Cancel jobs first: stopping slurmd does NOT stop running job steps.
pidf="$SLURM_DIR/state/slurmctld.pid"
if [ -f "$SLURM_CONF" ] && [ -s "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
  timeout 15 squeue -h -o %i 2>/dev/null | xargs -r scancel 2>/dev/null
  for _ in $(seq 40); do [ -z "$(timeout 5 squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.25; done
fi
stop "$SLURM_DIR"/state/slurmd-*.pid "$SLURM_DIR/state/slurmctld.pid" "$SLURM_DIR/state/slurmdbd.pid"
stop /run/mysqld/mysqld.pid /run/munge/munged.pid
[ "${1:-}" = --purge ] && rm -rf "$SLURM_DIR"
exit 0
