#!/usr/bin/env bash
# Start a throw-away SLURM cluster on this one machine: N fake nodes (node1..nodeN, each its own
# slurmd on its own port) behind one slurmctld, so the launcher (`python -m slurm submit ...`)
# and the tests run against the real thing. Debian/Ubuntu, run as root, no systemd needed.
# Installs its own packages (slurmctld slurmd slurm-client munge; ~13 MB, ~11 s cold).
#
# Usage: bash slurm/local-cluster/up.sh        then: export SLURM_CONF=$SLURM_DIR/slurm.conf
# Env:   SLURM_DIR (default /tmp/face-slurm), SLURM_NODES (default 2),
#        SLURM_DBD=1 to also run MariaDB + slurmdbd so that `sacct` works (final job states).
# Stop:  bash slurm/local-cluster/down.sh [--purge]
set -euo pipefail
SLURM_DIR=${SLURM_DIR:-/tmp/face-slurm}
NODES=${SLURM_NODES:-2}
DBD=${SLURM_DBD:-0}
export DEBIAN_FRONTEND=noninteractive
t0=$(date +%s)
if [ "$(id -u)" != 0 ]; then
  echo "up.sh: needs root (installs packages, starts munged/slurmctld/slurmd, edits /etc/hosts)" >&2; exit 2
fi
conf="$SLURM_DIR/slurm.conf"
# Already up? Re-running slurmctld/slurmd would replace the running daemons. (sinfo against a
# dead controller hangs ~10 s, hence the pid check first.)
pidf="$SLURM_DIR/state/slurmctld.pid"
if [ -s "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null &&
   [ "$(SLURM_CONF=$conf timeout 15 sinfo -h -N -t idle,alloc,mix -o %N 2>/dev/null | sort -u | wc -l)" -ge "$NODES" ]; then
  echo "SLURM already up; export SLURM_CONF=$conf"; exit 0
fi

# ---- 1. packages (skipped when present) ----
pkgs="slurmctld slurmd slurm-client munge"
[ "$DBD" = 1 ] && pkgs="$pkgs slurmdbd mariadb-server"
missing=$(for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
  command -v apt-get >/dev/null || { echo "up.sh: apt-get not found; install $missing yourself" >&2; exit 2; }
  echo "up.sh: installing $(echo $missing)"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# ---- 2. munge (the package's postinst makes the key; recreate it if missing) ----
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
fi
mkdir -p /run/munge; chown munge:munge /run/munge; chmod 0755 /run/munge
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged      # munged refuses to run as root
  for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi

# ---- 3. fake node names must resolve (MASTER_ADDR is the first node's name) ----
for i in $(seq 1 "$NODES"); do
  getent hosts "node$i" >/dev/null || echo "127.0.0.1 node$i" >> /etc/hosts
done

# ---- 4. configuration and state folders ----
mkdir -p "$SLURM_DIR"/{state,log,spool}
MEM=$(( $(free -m | awk '/^Mem:/{print $2}') / NODES / 2 ))   # nominal: memory is not enforced
CPUS=$(nproc)
ACCT="AccountingStorageType=accounting_storage/none"
if [ "$DBD" = 1 ]; then
  mkdir -p /run/mysqld; chown mysql:mysql /run/mysqld
  if ! mariadb-admin ping >/dev/null 2>&1; then
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    runuser -u mysql -- /usr/sbin/mariadbd --datadir=/var/lib/mysql \
      --socket=/run/mysqld/mysqld.sock --pid-file=/run/mysqld/mysqld.pid --skip-networking \
      >"$SLURM_DIR/log/mariadb.log" 2>&1 &
    for _ in $(seq 100); do mariadb-admin ping >/dev/null 2>&1 && break; sleep 0.2; done
  fi
  cat > "$SLURM_DIR/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
PidFile=$SLURM_DIR/state/slurmdbd.pid
LogFile=$SLURM_DIR/log/slurmdbd.log
CONF
  chmod 0600 "$SLURM_DIR/slurmdbd.conf"
  ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819"
fi
# Traps avoided: cgroup plugins fail in containers (hence proctrack/linuxproc and task/none);
# cred_expire=5 (the lowest accepted) lets a requeued job start again after ~5 s, not 120 s.
cat > "$conf" <<CONF
ClusterName=face
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=5
SlurmctldPort=6817
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool/%n
SlurmctldPidFile=$SLURM_DIR/state/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/state/slurmd-%n.pid
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
$ACCT
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SlurmdParameters=config_overrides
ReturnToService=2
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MailProg=/bin/true
MinJobAge=300
NodeName=node[1-$NODES] NodeHostname=$(hostname -s) NodeAddr=127.0.0.1 Port=17001-$((17000 + NODES)) CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$conf"

# ---- 5. daemons (each forks into the background and writes its pid file) ----
if [ "$DBD" = 1 ]; then
  slurmdbd          # reads slurmdbd.conf from the folder of $SLURM_CONF
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/6819) 2>/dev/null && break; sleep 0.2; done
fi
slurmctld -f "$conf" -i
for i in $(seq 1 "$NODES"); do
  mkdir -p "$SLURM_DIR/spool/node$i"
  slurmd -f "$conf" -N "node$i"
done

# ---- 6. wait until every node is idle ----
for _ in $(seq 120); do
  [ "$(sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | wc -l)" -ge "$NODES" ] && break
  sleep 0.25
done
sinfo -N
if [ "$(sinfo -h -N -t idle -o %N | sort -u | wc -l)" -lt "$NODES" ]; then
  tail -n 30 "$SLURM_DIR"/log/*.log; exit 1
fi
echo "SLURM up in $(( $(date +%s) - t0 )) s; export SLURM_CONF=$conf"
