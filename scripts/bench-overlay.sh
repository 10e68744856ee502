#!/usr/bin/env bash
# Throughput and round trip of the overlay tunnel on its own (no Docker): two network namespaces
# joined by a veth pair, `iperf3` (1 and 4 TCP streams) and `ping` across the plain link and
# through the tunnel over that same link, in one run. Prints figures; asserts nothing. Needs
# root, iperf3, jq and busybox. scripts/bench-network.sh measures the same between containers
# of two Docker hosts run by Corral.
#
#   scripts/bench-overlay.sh [SECONDS]     each iperf3 run lasts SECONDS (default 5)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib/common.sh"
. "$here/lib/netbench.sh"

secs=${1:-5}
bench_start "network namespaces, TUN devices" iperf3 jq busybox
log "building overlay-probe (release)"
(cd "$root" && cargo build -q --release -p corral-overlay --bin overlay-probe)
probe=$root/target/release/overlay-probe

id=$$
ns=(corral-ovl-test-bench-$id-a corral-ovl-test-bench-$id-b)
veth=(covlb$((id % 100000))a covlb$((id % 100000))b)
link=(10.213.99.1 10.213.99.2)
subnet=(10.42.1.0/24 10.42.2.0/24)
tunnel=(10.42.1.1 10.42.2.1)
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for n in "${ns[@]}"; do ip netns del "$n" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

for i in 0 1; do
    ip netns add "${ns[i]}"
    ip -n "${ns[i]}" link set lo up
done
ip link add "${veth[0]}" netns "${ns[0]}" type veth peer name "${veth[1]}" netns "${ns[1]}"
for i in 0 1; do
    ip -n "${ns[i]}" addr add "${link[i]}/30" dev "${veth[i]}"
    ip -n "${ns[i]}" link set "${veth[i]}" up
done
key=()
for i in 0 1; do key[i]=$(RUST_LOG=warn "$probe" public-key --key "$tmp/$i.key"); done
for i in 0 1; do
    o=$((1 - i))
    RUST_LOG=warn ip netns exec "${ns[i]}" "$probe" run --key "$tmp/$i.key" \
        --local-subnet "${subnet[i]}" --peer "${key[o]},${link[o]}:51820,${subnet[o]}" \
        --status "$tmp/$i.json" 2>"$tmp/probe-$i.log" &
    pids+=($!)
done
for _ in $(seq 100); do
    grep -q '"secs"' "$tmp/0.json" 2>/dev/null && grep -q '"secs"' "$tmp/1.json" 2>/dev/null && break
    sleep 0.1
done
grep -q '"secs"' "$tmp/0.json" 2>/dev/null || die "no handshake within 10 s: $(cat "$tmp"/probe-*.log)"

ip netns exec "${ns[1]}" iperf3 -s >/dev/null 2>&1 &
pids+=($!)
sleep 0.5

enter=(ip netns exec "${ns[0]}")
row() { # PATH TARGET
    printf '  %-30s %10s %10s %10s\n' "$1" "$(tcp_mbits "$secs" 1 "$2" "${enter[@]}")" \
        "$(tcp_mbits "$secs" 4 "$2" "${enter[@]}")" "$(rtt_p50 100 "$2" "${enter[@]}")"
}
printf 'bench-overlay: %s CPU cores, load average %s, %s s per iperf3 run\n' "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$secs"
printf '  %-30s %10s %10s %10s\n' path 'Mbit/s x1' 'Mbit/s x4' 'RTT p50 ms'
row 'veth (plain)' "${link[1]}"
row 'overlay tunnel over the veth' "${tunnel[1]}"
# Datagrams the kernel dropped because a tunnel socket's receive buffer was full (each side).
drops() { ip netns exec "$1" nstat -az UdpRcvbufErrors | awk '/UdpRcvbufErrors/ {print $2}'; }
printf '  UDP receive-buffer drops: %s (A), %s (B)\n' "$(drops "${ns[0]}")" "$(drops "${ns[1]}")"
# Each probe's peak resident memory: the packet path's buffers are touched as traffic fills them.
hwm() { awk '/VmHWM/ {print $2, $3}' "/proc/$1/status"; }
printf '  overlay-probe peak RSS: %s (A), %s (B)\n' "$(hwm "${pids[0]}")" "$(hwm "${pids[1]}")"
