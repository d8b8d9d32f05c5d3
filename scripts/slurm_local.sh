#!/usr/bin/env bash
# A single-node Slurm on this machine (munge + slurmctld + slurmd from Debian's packages, as root), for the
# Slurm tests and for trying `headcam-train ... slurm.nodes=1` or `headcam-ingest videos ... --slurm N` without a
# cluster. One node of `nproc` CPUs, no GPUs, partition `debug`; linuxproc/none plugins, so no cgroups are needed.
#
#   bash scripts/slurm_local.sh start    # idempotent: a Slurm that already answers is left as it is
#   bash scripts/slurm_local.sh stop     # stops the daemons this script started
#   bash scripts/slurm_local.sh status
#
# Exit codes: 0 up (or stopped), 1 could not start (reason on stderr), 2 not root or the packages are missing.
# It writes /etc/slurm/slurm.conf only when that file is absent or was written by this script.
set -euo pipefail

MARK="# written by headcam scripts/slurm_local.sh"
CONF=/etc/slurm/slurm.conf
LOGS=/var/log/slurm
STATE=/var/lib/slurm

die() { echo "slurm_local: $1" >&2; exit "${2:-1}"; }

answers() { timeout 10 sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_conf() {
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))  # MiB, a tenth left to the system
    if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
        die "$CONF exists and was not written by this script; not touching it" 1
    fi
    mkdir -p /etc/slurm "$LOGS" "$STATE/slurmctld" "$STATE/slurmd"
    # cred_expire=5: a requeued job may start again 6 s later instead of Slurm's default 121 s;
    # sched_interval/bf_interval: pending jobs (array tasks, a dependent merge) start within seconds.
    cat > "$CONF" <<EOF
$MARK
ClusterName=headcam-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=5
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
KillWait=10
MinJobAge=600
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    if timeout 5 munge -n </dev/null 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; then return; fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge
    [ -f /etc/munge/munge.key ] || die "no /etc/munge/munge.key (reinstall the munge package)"
    runuser -u munge -- /usr/sbin/munged --force
    for _ in $(seq 50); do
        timeout 5 munge -n </dev/null 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1 && return
        sleep 0.1
    done
    die "munged did not start (see /var/log/munge/munged.log)"
}

start() {
    [ "$(id -u)" = 0 ] || die "must run as root (it starts munged, slurmctld and slurmd)" 2
    for tool in munged slurmctld slurmd sbatch sinfo scontrol; do
        command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || die "$tool not found (apt-get install slurmctld slurmd slurm-client munge)" 2
    done
    if answers; then echo "slurm_local: Slurm already up ($(sinfo -h -o '%P %D node(s) %c CPUs %T'))"; return; fi
    write_conf
    start_munge
    pid_alive /run/slurmctld.pid || /usr/sbin/slurmctld
    pid_alive /run/slurmd.pid || /usr/sbin/slurmd
    for _ in $(seq 150); do
        if answers; then echo "slurm_local: Slurm up ($(sinfo -h -o '%P %D node(s) %c CPUs %T'))"; return; fi
        sleep 0.2
    done
    die "Slurm did not come up in 30 s (see $LOGS/slurmctld.log and $LOGS/slurmd.log)"
}

stop() {
    for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
        if pid_alive "$pidfile"; then kill "$(cat "$pidfile")"; fi
    done
    if [ -f /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; then
        kill "$(cat /run/munge/munged.pid)"
    fi
    echo "slurm_local: stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) if answers; then sinfo; else echo "slurm_local: Slurm is not answering"; exit 1; fi ;;
    *) die "usage: bash scripts/slurm_local.sh start|stop|status" 2 ;;
esac
