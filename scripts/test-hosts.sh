#!/usr/bin/env bash
# Several Docker "hosts" on one machine, for tests: each is a dockerd in its own network namespace,
# joined by a bridge in the root namespace.
#
#   scripts/test-hosts.sh up N        ensure hosts h1..hN run; prints "hI SOCKET IP" per host
#   scripts/test-hosts.sh down [--purge]
#                                     stop every test host, remove namespaces, veths, bridge and
#                                     the FORWARD rule (--purge also deletes the engines' data)
#   scripts/test-hosts.sh netns I     ensure a bare namespace corral-hI on the bridge (no dockerd)
#   scripts/test-hosts.sh status      print the hosts that answer
#
# Layout: bridge corral-br0 (10.213.0.1/24) in the root namespace; namespace corral-hI with eth0
# 10.213.0.(10+I)/24 and a default route via 10.213.0.1; its dockerd listens on
# unix:///run/corral-test/hI/docker.sock, keeps data in /var/lib/corral-test/hI, and gives its
# containers 172.30.I.0/24.
#
# Each dockerd also runs in a mount namespace of its own, where /etc/docker/certs.d (where an
# engine looks for registries' CAs) is /run/corral-test/hI/certs.d: an agent told
# `--registry-certs-dir /run/corral-test/hI/certs.d` installs CAs for that engine alone, as it
# would on a real host, and the machine's own /etc/docker/certs.d stays the default engine's.
#
# Both directions are idempotent and repair partial leftovers of earlier runs. dockerd is started
# with `nsenter --net=`, not `ip netns exec`: the latter remounts /sys and dockerd then fails with
# "Devices cgroup isn't mounted".
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib/common.sh"

[[ $(id -u) -eq 0 ]] || exec sudo -E "$0" "$@"

BRIDGE=$TEST_BRIDGE
BRIDGE_IP=$TEST_BRIDGE_IP
PREFIX=24
RUN_ROOT=/run/corral-test
DATA_ROOT=/var/lib/corral-test
START_TIMEOUT=${CORRAL_TEST_HOSTS_TIMEOUT:-30}
CERTS_DIR=/etc/docker/certs.d

ns_name() { echo "corral-h$1"; }
host_ip() { echo "10.213.0.$((10 + $1))"; }
host_sock() { echo "unix://$RUN_ROOT/h$1/docker.sock"; }
veth_root() { echo "corral-h$1-r"; }   # root-namespace end, a port of the bridge
veth_tmp() { echo "corral-h$1-c"; }    # namespace end before it is moved and renamed eth0

ensure_bridge() {
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge
    fi
    if ! ip -4 addr show dev "$BRIDGE" | grep -q "inet $BRIDGE_IP/$PREFIX"; then
        ip addr add "$BRIDGE_IP/$PREFIX" dev "$BRIDGE"
    fi
    ip link set "$BRIDGE" up
    # Docker sets the FORWARD policy to DROP once any dockerd runs in the root namespace.
    if ! iptables -C FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null; then
        iptables -I FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
    fi
}

nsx() { local ns=$1; shift; nsenter --net="/run/netns/$ns" "$@"; }

ensure_netns() {
    local i=$1 ns vr vt ip
    ns=$(ns_name "$i"); vr=$(veth_root "$i"); vt=$(veth_tmp "$i"); ip=$(host_ip "$i")
    if [[ ! -e /run/netns/$ns ]] || ! nsx "$ns" true 2>/dev/null; then
        ip netns delete "$ns" 2>/dev/null || true
        ip netns add "$ns"
    fi
    # The pair is whole when the root end exists and the namespace has eth0.
    if ! ip link show "$vr" >/dev/null 2>&1 || ! nsx "$ns" ip link show eth0 >/dev/null 2>&1; then
        ip link delete "$vr" 2>/dev/null || true
        ip link delete "$vt" 2>/dev/null || true
        nsx "$ns" ip link delete eth0 2>/dev/null || true
        ip link add "$vr" type veth peer name "$vt"
        ip link set "$vt" netns "$ns"
        nsx "$ns" ip link set "$vt" name eth0
    fi
    ip link set "$vr" master "$BRIDGE"
    ip link set "$vr" up
    nsx "$ns" ip link set lo up
    if ! nsx "$ns" ip -4 addr show dev eth0 | grep -q "inet $ip/$PREFIX"; then
        nsx "$ns" ip addr flush dev eth0
        nsx "$ns" ip addr add "$ip/$PREFIX" dev eth0
    fi
    nsx "$ns" ip link set eth0 up
    nsx "$ns" ip route replace default via "$BRIDGE_IP" dev eth0
}

# The inode of a network namespace, to tell whether a dockerd runs in the current one.
netns_inode() { stat -L -c %i "/run/netns/$1" 2>/dev/null; }
pid_netns_inode() { readlink "/proc/$1/ns/net" 2>/dev/null | sed -n 's/^net:\[\([0-9]*\)\]$/\1/p'; }

# dockerd processes serving host I, found by pid file and by their socket in the command line
# (a dockerd whose pid file was lost still holds the socket).
host_pids() {
    local i=$1 pid p sock
    sock="$RUN_ROOT/h$i/docker.sock"
    {
        pid_alive "$RUN_ROOT/h$i/docker.pid" || true
        for p in /proc/[0-9]*; do
            is_live_dockerd "${p#/proc/}" || continue
            if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "unix://$sock "; then
                echo "${p#/proc/}"
            fi
        done
    } | sort -u
}

start_dockerd() {
    local i=$1 ns dir pid
    ns=$(ns_name "$i"); dir="$RUN_ROOT/h$i"
    mkdir -p "$dir/exec" "$dir/certs.d" "$DATA_ROOT/h$i" "$CERTS_DIR"
    # One started by an older version of this script reads the machine's certs dir: replace it.
    for pid in $(host_pids "$i"); do
        if [[ $(readlink "/proc/$pid/ns/mnt") == "$(readlink /proc/self/ns/mnt)" ]]; then
            log "h$i: dockerd $pid reads the machine's $CERTS_DIR; restarting it with its own"
            stop_pid "$pid"
        fi
    done
    # A dockerd left in a namespace that was since deleted and re-made still answers on its
    # socket but serves the wrong network: replace it.
    for pid in $(host_pids "$i"); do
        if [[ $(pid_netns_inode "$pid") != $(netns_inode "$ns") ]]; then
            log "h$i: dockerd $pid runs in a stale network namespace; restarting it"
            stop_pid "$pid"
        fi
    done
    if engine_up "$(host_sock "$i")"; then
        return 0
    fi
    pid=$(host_pids "$i" | head -n1)
    if [[ -n $pid ]]; then
        # Still starting, or hung: give it the start timeout, then replace it.
        if wait_engine "$(host_sock "$i")" "$START_TIMEOUT"; then return 0; fi
        log "h$i: dockerd $pid does not answer; restarting it"
        stop_pid "$pid"
    fi
    rm -f "$dir/docker.pid" "$dir/docker.sock"
    # Slave propagation: the namespace sees later mounts and unmounts of the machine (netns
    # files) but keeps its own, so it holds no deleted namespace alive.
    nsenter --net="/run/netns/$ns" setsid unshare --mount --propagation slave \
        sh -c 'mount --bind "$1" "$2" && shift 2 && exec "$@"' sh "$dir/certs.d" "$CERTS_DIR" dockerd \
        --data-root "$DATA_ROOT/h$i" \
        --exec-root "$dir/exec" \
        -H "$(host_sock "$i")" \
        -p "$dir/docker.pid" \
        --bip "172.30.$i.1/24" \
        >>"$dir/dockerd.log" 2>&1 </dev/null &
    disown || true
}

up() {
    local n=$1 i failed=0
    [[ $n =~ ^[0-9]+$ && $n -ge 1 && $n -le 200 ]] || die "usage: $0 up N   (1 <= N <= 200)"
    command -v dockerd >/dev/null 2>&1 || die "dockerd not found (scripts/setup.sh installs docker.io)"
    mkdir -p "$RUN_ROOT" "$DATA_ROOT"
    ensure_bridge
    for ((i = 1; i <= n; i++)); do
        ensure_netns "$i"
        start_dockerd "$i"
    done
    for ((i = 1; i <= n; i++)); do
        if ! wait_engine "$(host_sock "$i")" "$START_TIMEOUT"; then
            log "h$i: dockerd did not answer within ${START_TIMEOUT}s; last log lines:"
            tail -n 20 "$RUN_ROOT/h$i/dockerd.log" >&2 || true
            failed=1
        fi
    done
    ((failed == 0)) || exit 1
    # Import the test image into every engine, in parallel.
    local pids=()
    for ((i = 1; i <= n; i++)); do
        "$here/build-test-image.sh" "$(host_sock "$i")" >/dev/null &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || failed=1; done
    ((failed == 0)) || die "importing the test image failed"
    for ((i = 1; i <= n; i++)); do
        echo "h$i $(host_sock "$i") $(host_ip "$i")"
    done
}

known_hosts() {
    {
        ip netns list 2>/dev/null | awk '{print $1}' | sed -n 's/^corral-h\([0-9]\+\)$/\1/p'
        for d in "$RUN_ROOT"/h[0-9]*; do [[ -d $d ]] && echo "${d##*/h}"; done
        ip -o link show 2>/dev/null | sed -n 's/^[0-9]*: corral-h\([0-9]\+\)-[rc][@:].*/\1/p'
    } | sort -un
}

down() {
    local purge=0 i pid sock m
    [[ ${1:-} == --purge ]] && purge=1
    for i in $(known_hosts); do
        sock=$(host_sock "$i")
        # Remove what the tests made, so the next run starts clean.
        if pick_docker "$sock" >/dev/null 2>&1 && engine_up "$sock"; then
            ids=$("$DOCKER" -H "$sock" ps -aq 2>/dev/null || true)
            [[ -n $ids ]] && "$DOCKER" -H "$sock" rm -f $ids >/dev/null 2>&1 || true
        fi
        for pid in $(host_pids "$i"); do stop_pid "$pid"; done
        # A dockerd killed hard leaves mounts behind; remove them deepest first.
        for m in $(awk '{print $2}' /proc/self/mounts | grep -E "^($RUN_ROOT|$DATA_ROOT)/h$i(/|$)" | sort -r); do
            umount -l "$m" 2>/dev/null || true
        done
        ip link delete "$(veth_root "$i")" 2>/dev/null || true
        ip link delete "$(veth_tmp "$i")" 2>/dev/null || true
        ip netns delete "$(ns_name "$i")" 2>/dev/null || true
        rm -rf "${RUN_ROOT:?}/h$i"
        if ((purge)); then rm -rf "${DATA_ROOT:?}/h$i"; fi
    done
    while iptables -C FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null; do
        iptables -D FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
    done
    ip link delete "$BRIDGE" 2>/dev/null || true
    rmdir "$RUN_ROOT" 2>/dev/null || true
    return 0
}

status() {
    local i
    for i in $(known_hosts); do
        if engine_up "$(host_sock "$i")"; then echo "h$i $(host_sock "$i") $(host_ip "$i")"; fi
    done
}

# A bare namespace on the bridge, without dockerd: `netns 0` gives the control plane of the
# network tests (corral-h0, 10.213.0.10) an address the hosts reach over the test network.
bare_netns() {
    local i=${1:?usage: $0 netns I}
    [[ $i =~ ^[0-9]+$ ]] || die "netns: I must be a number"
    ensure_bridge
    ensure_netns "$i"
    echo "$(ns_name "$i") $(host_ip "$i")"
}

case ${1:-} in
    up) up "${2:-}" ;;
    netns) bare_netns "${2:-}" ;;
    down) down "${2:-}" ;;
    status) status ;;
    *) echo "usage: $0 up N | netns I | down [--purge] | status" >&2; exit 2 ;;
esac
