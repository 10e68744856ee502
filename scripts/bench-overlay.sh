#!/usr/bin/env bash
# Throughput and round trip of the overlay tunnel on its own (no Docker): two network namespaces
# joined by a veth pair, `iperf3` and `ping` across the plain link and through the tunnel over
# that same link, in one run. Prints figures; asserts nothing. Needs root, iperf3 and busybox.
#
#   scripts/bench-overlay.sh [SECONDS]     each iperf3 run lasts SECONDS (default 5)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib/common.sh"

secs=${1:-5}
[[ $(id -u) -eq 0 ]] || die "needs root (network namespaces, TUN devices)"
command -v iperf3 >/dev/null || die "iperf3 is missing: apt-get install iperf3"
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

# iperf3's receiver line: "... 5.47 Gbits/sec  receiver" -> "5.47 Gbits/sec"
throughput() {
    ip netns exec "${ns[0]}" iperf3 -c "$1" -t "$secs" -f m | awk '/receiver/ {print $(NF-2), $(NF-1)}'
}
# busybox ping's summary: "round-trip min/avg/max = 0.041/0.060/0.102 ms" -> "0.060 ms"
rtt() {
    ip netns exec "${ns[0]}" busybox ping -c 50 -i 0.05 -q "$1" | awk -F'[/ ]' '/round-trip/ {print $(NF-2), "ms"}'
}

plain_tp=$(throughput "${link[1]}")
tunnel_tp=$(throughput "${tunnel[1]}")
plain_rtt=$(rtt "${link[1]}")
tunnel_rtt=$(rtt "${tunnel[1]}")
printf 'bench-overlay: %s CPU cores, %s s per iperf3 run, one TCP stream\n' "$(nproc)" "$secs"
printf '  %-28s %16s %12s\n' path throughput 'avg rtt'
printf '  %-28s %16s %12s\n' 'veth (plain)' "$plain_tp" "$plain_rtt"
printf '  %-28s %16s %12s\n' 'overlay tunnel over the veth' "$tunnel_tp" "$tunnel_rtt"
# Datagrams the kernel dropped because a tunnel socket's receive buffer was full (each side).
drops() { ip netns exec "$1" nstat -az UdpRcvbufErrors | awk '/UdpRcvbufErrors/ {print $2}'; }
printf '  UDP receive-buffer drops: %s (A), %s (B)\n' "$(drops "${ns[0]}")" "$(drops "${ns[1]}")"
