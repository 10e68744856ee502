#!/usr/bin/env bash
# bench-network: container-to-container TCP throughput and round trip across two hosts through
# Corral's managed network (the agents' encrypted tunnel), against the same two hosts' plain
# host-to-host path, in one run. Prints figures; asserts nothing (not a timed test).
#
#   scripts/bench-network.sh [SECONDS]     each iperf3 run lasts SECONDS (default 5)
#
# The real stack: a control plane in namespace corral-h0 and an agent in each of the test hosts
# h1 and h2 (scripts/test-hosts.sh: a dockerd per network namespace, on one bridge), as
# tests/network.rs runs them; a service of two containers on the managed network, one per host.
# The test image has no iperf3, so the machine's iperf3 and busybox ping run inside each
# container's network namespace (`nsenter -t PID -n`). It holds the test engines' lock (as the
# end-to-end tests do) and removes what it made. Needs root, a release build of `corral`, iperf3,
# jq and busybox; about a minute plus the build.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib/common.sh"
. "$here/lib/netbench.sh"

secs=${1:-5}
bench_start "network namespaces, the test hosts' engines" iperf3 jq busybox nsenter flock
log "building corral (release)"
(cd "$root" && cargo build -q --release -p corral-cli --bin corral)
corral=$root/target/release/corral
IMAGE=corral-test/busybox:latest

# The end-to-end tests' lock on the test engines (tests/support/mod.rs `exclusive`): an agent
# removes managed containers it was not asked for, so two clusters on one engine would fight.
mkdir -p /run/corral-test
exec 9>/run/corral-test/engines.lock
log "waiting for the test engines' lock"
flock -w 900 9 || die "the test engines stayed busy for 15 minutes"

mapfile -t hosts < <("$here/test-hosts.sh" up 2)
((${#hosts[@]} == 2)) || die "scripts/test-hosts.sh up 2 gave: ${hosts[*]}"
name=() sock=() addr=()
for i in 0 1; do read -r "name[i]" "sock[i]" "addr[i]" <<<"${hosts[i]}"; done
pick_docker "${sock[0]}" || die "no docker client talks to ${sock[0]}"
read -r cp_ns cp_ip < <("$here/test-hosts.sh" netns 0)

tmp=$(mktemp -d)
pids=()
clear_engines() {
    local s ids
    for s in "${sock[@]}"; do
        ids=$("$DOCKER" -H "$s" ps -aq --filter label=io.corral.managed=true)
        [[ -z $ids ]] || "$DOCKER" -H "$s" rm -f $ids >/dev/null
    done
}
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    clear_engines
    rm -rf "$tmp"
}
trap cleanup EXIT
clear_engines
for s in "${sock[@]}"; do "$here/build-test-image.sh" "$s"; done

log "starting a control plane in $cp_ns and agents in ${name[*]}"
nsenter --net="/run/netns/$cp_ns" "$corral" server --listen 0.0.0.0:0 --data-dir "$tmp/data" --tls off >"$tmp/server.log" 2>&1 &
pids+=($!)
url=
for _ in $(seq 200); do
    url=$(sed -n 's/^Corral control plane on \([^ ]*\).*/\1/p' "$tmp/server.log" | head -1)
    [[ -n $url ]] && break
    sleep 0.1
done
[[ -n $url ]] || die "the control plane did not start: $(cat "$tmp/server.log")"
export CORRAL_URL=${url/0.0.0.0/$cp_ip} CORRAL_TOKEN=$(cat "$tmp/data/admin-token")
unset CORRAL_ENV
cli() { "$corral" -o json "$@"; }
token=$(cli host join-command | jq -r .token)
for i in 0 1; do
    nsenter --net="/run/netns/corral-${name[i]}" "$corral" agent --server "$CORRAL_URL" --token "$token" \
        --docker-host "${sock[i]}" --name "${name[i]}" --address "${addr[i]}" \
        --registry-certs-dir "/run/corral-test/${name[i]}/certs.d" --state-dir "$tmp/agent-$i" \
        >"$tmp/agent-$i.log" 2>&1 &
    pids+=($!)
done

# until CHECK...: runs CHECK every 200 ms for at most 60 s; dies with WHAT if it never passes.
until_ok() {
    local what=$1
    shift
    for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    die "timed out waiting for $what (logs: $(tail -5 "$tmp"/*.log))"
}
tunnels_known() { cli network ls | jq -e '[.hosts[] | select(.public_key != null)] | length == 2'; }
until_ok "both hosts' tunnels" tunnels_known
cli stack create BENCH >/dev/null
cli service create BENCH/net --image "$IMAGE" --scale 2 -- sleep 100000 >/dev/null

# The container each host runs, its process (for nsenter) and its managed address.
pid=() ip=()
placed() {
    local i c
    for i in 0 1; do
        c=$("$DOCKER" -H "${sock[i]}" ps -q --filter label=io.corral.managed=true | head -1)
        [[ -n $c ]] || return 1
        pid[i]=$("$DOCKER" -H "${sock[i]}" inspect -f '{{.State.Pid}}' "$c")
        ip[i]=$("$DOCKER" -H "${sock[i]}" inspect -f '{{with index .NetworkSettings.Networks "corral-managed"}}{{.IPAddress}}{{end}}' "$c")
        [[ ${pid[i]} != 0 && -n ${ip[i]} ]] || return 1
    done
}
until_ok "one container on the managed network on each host" placed
# The first packets cross once the tunnel's handshake is done.
until_ok "container-to-container ping" nsenter -t "${pid[0]}" -n busybox ping -c 1 -W 1 "${ip[1]}"

nsenter -t "${pid[1]}" -n iperf3 -s >/dev/null 2>&1 &
pids+=($!)
nsenter --net="/run/netns/corral-${name[1]}" iperf3 -s >/dev/null 2>&1 &
pids+=($!)
sleep 0.5

# row PATH TARGET ENTER...: one line of the table; the round trip is also left in $p50.
p50=
row() {
    local path=$1 target=$2
    shift 2
    local one four
    one=$(tcp_mbits "$secs" 1 "$target" "$@")
    four=$(tcp_mbits "$secs" 4 "$target" "$@")
    p50=$(rtt_p50 100 "$target" "$@")
    printf '  %-52s %10s %10s %10s\n' "$path" "$one" "$four" "$p50"
}
printf 'bench-network: %s CPU cores, load average %s, %s s per iperf3 run\n' "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$secs"
printf '  %-52s %10s %10s %10s\n' path 'Mbit/s x1' 'Mbit/s x4' 'RTT p50 ms'
row "host to host, plain (${name[0]} -> ${name[1]})" "${addr[1]}" nsenter --net="/run/netns/corral-${name[0]}"
plain=$p50
row "container to container, tunnel (${ip[0]} -> ${ip[1]})" "${ip[1]}" nsenter -t "${pid[0]}" -n
printf '  added round trip (p50): %s ms\n' "$(ms_diff "$p50" "$plain")"
