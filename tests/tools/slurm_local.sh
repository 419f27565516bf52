#!/usr/bin/env bash
# A single-node Slurm for tests (Debian slurm-wlm 22.05, run as root, no systemd), as
# TOOLCHAIN.md describes. Everything lives under STATE_DIR; stop kills by pid exactly what
# start started.
#   tests/tools/slurm_local.sh start STATE_DIR    (prints nothing on success)
#   tests/tools/slurm_local.sh stop STATE_DIR
# Exit 77 (the ctest skip code) when Slurm or munge is not installed or we are not root.
set -euo pipefail
action=${1:?start|stop}
state=${2:?state directory}
skip() { echo "slurm_local: $*: skipped" >&2; exit 77; }

if [[ $action == stop ]]; then
  for daemon in slurmd slurmctld munged; do
    if [[ -f $state/$daemon.pid ]]; then
      kill "$(cat "$state/$daemon.pid")" 2>/dev/null || true
    fi
  done
  sleep 1
  for daemon in slurmd slurmctld munged; do
    if [[ -f $state/$daemon.pid ]]; then kill -9 "$(cat "$state/$daemon.pid")" 2>/dev/null || true; fi
  done
  exit 0
fi

[[ $(id -u) -eq 0 ]] || skip "needs root"
for program in slurmctld slurmd munged sbatch; do
  command -v "$program" >/dev/null || skip "$program not installed (apt-get install slurm-wlm munge)"
done
mkdir -p "$state"/{spool,slurmd,log}
chmod 755 "$state"
runuser -u munge -- test -x "$state" || skip "the munge user cannot enter $state (make its parents world-searchable)"
host=$(hostname -s)

# munge: its own socket and key under STATE_DIR (owned by munge), so nothing system-wide changes.
mkdir -p "$state/munge"
chown munge:munge "$state/munge"
chmod 700 "$state/munge"
if [[ ! -f $state/munge/munge.key ]]; then
  dd if=/dev/urandom of="$state/munge/munge.key" bs=1024 count=1 2>/dev/null
  chown munge:munge "$state/munge/munge.key"
  chmod 400 "$state/munge/munge.key"
fi
socket=$state/munge/munge.socket
runuser -u munge -- munged --key-file="$state/munge/munge.key" --socket="$socket" \
  --pid-file="$state/munge/munged.pid" --log-file="$state/munge/munged.log" --seed-file="$state/munge/seed" --force
cp "$state/munge/munged.pid" "$state/munged.pid"

cat > "$state/slurm.conf" <<CONF
ClusterName=nlatest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
StateSaveLocation=$state/spool
SlurmdSpoolDir=$state/slurmd
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
SlurmctldPort=$((6817 + RANDOM % 500 * 2))
SlurmdPort=$((7817 + RANDOM % 500 * 2))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
NodeName=$host NodeAddr=127.0.0.1 CPUs=4 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$state/slurm.conf
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 1 60); do
  if sinfo -h -o %T 2>/dev/null | grep -qE "^idle"; then exit 0; fi
  sleep 0.5
done
echo "slurm_local: the node did not become idle; logs in $state/log" >&2
sinfo >&2 || true
exit 1
