#!/usr/bin/env bash
# A single-node SLURM cluster on this machine for tests/distributed/test_slurm.py (docs/stack.md P13):
# munged, slurmctld and slurmd from Debian's slurm-wlm/munge packages, one node with this
# machine's CPUs, one partition "debug". Idempotent: daemons already running (pid file alive)
# are left alone, so CI and the test fixture may both call it.
#   .ci/slurm-setup.sh            # as root; exits non-zero when SLURM cannot be started
# Stop with .ci/slurm-setup.sh stop (by pid file, never by process name).
set -euo pipefail

STATE=${PATHOSAM_SLURM_STATE:-/var/lib/pathosam-slurm}
CONF=/etc/slurm/slurm.conf
NODE=$(hostname -s)

alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

if [[ ${1:-} == stop ]]; then
  for pid in "$STATE/slurmd.pid" "$STATE/slurmctld.pid"; do
    alive "$pid" && kill "$(cat "$pid")"
  done
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "slurm-setup: needs root (to install packages and run slurmd); got uid $(id -u)" >&2
  exit 2
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q slurm-wlm munge >/dev/null
fi

# munge: a key owned by munge, mode 0400; the daemon keeps its own pid file.
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
if ! alive /run/munge/munged.pid; then
  runuser -u munge -- /usr/sbin/munged --force
fi

# slurm.conf: this machine's CPUs, 90 % of its memory; state folders of our own (P13: a state
# folder holding another ClusterName makes slurmctld refuse to start).
install -d -m 0755 "$STATE" "$STATE/ctld" "$STATE/d" "$STATE/log" /etc/slurm
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
cat > "$CONF.new" <<EOF
# Written by pathosam-wsi .ci/slurm-setup.sh: a one-node test cluster.
ClusterName=pathosam
SlurmctldHost=$NODE
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=60
NodeName=$NODE CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
if ! cmp -s "$CONF.new" "$CONF"; then
  mv "$CONF.new" "$CONF"
  changed=1
else
  rm -f "$CONF.new"
  changed=0
fi

if ! alive "$STATE/slurmctld.pid"; then
  /usr/sbin/slurmctld
elif [[ $changed == 1 ]]; then
  scontrol reconfigure
fi
if ! alive "$STATE/slurmd.pid"; then
  /usr/sbin/slurmd
fi

# Wait until the node accepts jobs.
for _ in $(seq 1 60); do
  state=$(sinfo -h -n "$NODE" -o %t 2>/dev/null || true)
  case "$state" in
    idle*|mix*|alloc*) echo "slurm-setup: node $NODE $state ($CPUS CPUs, ${MEM_MB} MB)"; exit 0 ;;
    down*|drain*) scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
  esac
  sleep 1
done
echo "slurm-setup: node $NODE not idle after 60 s (state '${state:-?}'); see $STATE/log/" >&2
exit 1
