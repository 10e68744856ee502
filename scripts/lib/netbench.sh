# Measurements shared by the network benchmarks (bench-overlay.sh, bench-network.sh). Source it;
# it defines functions only. Each takes, last, the command that enters the client's network
# namespace (e.g. `nsenter --net=/run/netns/NS` or `nsenter -t PID -n`); iperf3, busybox and jq
# are the machine's own (scripts/setup.sh installs them).

# tcp_mbits SECONDS STREAMS SERVER ENTER...: TCP throughput to an `iperf3 -s` at SERVER, in Mbit/s
# as the receiver counted it, summed over STREAMS parallel streams.
tcp_mbits() {
    local secs=$1 streams=$2 server=$3
    shift 3
    "$@" iperf3 -c "$server" -t "$secs" -P "$streams" -J | jq '.end.sum_received.bits_per_second / 1e6 | floor'
}

# rtt_p50 COUNT TARGET ENTER...: the median round trip to TARGET over COUNT pings 50 ms apart,
# in ms (3 decimals, as ping prints them).
rtt_p50() {
    local count=$1 target=$2
    shift 2
    "$@" busybox ping -c "$count" -i 0.05 "$target" \
        | sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' | sort -n \
        | awk '{ t[NR] = $1 } END { if (NR) printf "%.3f\n", t[int((NR + 1) / 2)]; else print "n/a" }'
}

# ms_diff A B: A - B in ms, 3 decimals ("n/a" if either is).
ms_diff() {
    [[ $1 == n/a || $2 == n/a ]] && { echo n/a; return; }
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", a - b }'
}

# bench_start WHY TOOL...: dies unless run as root (WHY says what for) with every TOOL installed.
bench_start() {
    local why=$1
    shift
    [[ $(id -u) -eq 0 ]] || die "needs root ($why)"
    local c
    for c in "$@"; do command -v "$c" >/dev/null || die "$c is missing: scripts/setup.sh installs it"; done
}
