#!/bin/bash
# A single-node Slurm on this machine, from Debian's packages (root; used by the CI test).
#   bash scripts/slurm/local_cluster.sh start    # install if needed, configure, start daemons
#   bash scripts/slurm/local_cluster.sh stop     # stop the daemons this script started
set -euo pipefail
start() {
    if ! command -v slurmctld > /dev/null || ! command -v munged > /dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge > /dev/null
    fi
    mkdir -p /etc/munge /var/log/munge /run/munge /var/lib/munge /var/spool/slurmctld \
        /var/spool/slurmd /var/log/slurm /etc/slurm
    [ -f /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2> /dev/null
    chown -R munge:munge /etc/munge /var/log/munge /run/munge /var/lib/munge
    chmod 400 /etc/munge/munge.key
    if ! pgrep -x munged > /dev/null; then
        munged --force
        touch /run/al2-started-munged
    fi
    local host cpus mem
    host=$(hostname -s); cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 2000 ))
    cat > /etc/slurm/slurm.conf <<CONF
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    slurmctld
    slurmd
    for _ in $(seq 30); do
        sinfo -h -o %t 2> /dev/null | grep -q idle && return 0
        sleep 1
    done
    echo "local_cluster: the node did not become idle" >&2
    sinfo >&2 || true
    return 1
}
stop() {
    local f
    for f in /run/slurmd.pid /run/slurmctld.pid; do
        [ -f "$f" ] && kill "$(cat "$f")" 2> /dev/null || true
    done
    if [ -f /run/al2-started-munged ]; then
        pkill -x munged || true
        rm -f /run/al2-started-munged
    fi
}
case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: local_cluster.sh start|stop" >&2; exit 2 ;;
esac
