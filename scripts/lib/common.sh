# Shared helpers for the scripts in scripts/. Source it; it defines functions and variables only.

# Run as root, or through sudo when not root (setup, netns and dockerd all need root).
as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# The test hosts' network (scripts/test-hosts.sh makes it): the bridge and the machine's address
# on it, where the test registries listen too.
TEST_BRIDGE=corral-br0
TEST_BRIDGE_IP=10.213.0.1

log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { log "$*"; exit 1; }

# pick_docker SOCKET_URL: sets $DOCKER to a docker client that can talk to that engine.
# Debian's engine is 20.10 (API 1.41). A newer client (e.g. 28.x) negotiates down and works;
# if the client on PATH does not, fall back to the one the docker.io package installs.
pick_docker() {
    local host=$1 c
    for c in ${DOCKER:-} docker /usr/bin/docker; do
        command -v "$c" >/dev/null 2>&1 || continue
        if "$c" -H "$host" version --format '{{.Server.APIVersion}}' >/dev/null 2>&1; then
            DOCKER=$c
            export DOCKER
            return 0
        fi
    done
    DOCKER=${DOCKER:-docker}
    command -v "$DOCKER" >/dev/null 2>&1 || DOCKER=/usr/bin/docker
    export DOCKER
    return 1
}

# engine_up SOCKET_URL: true when an engine answers there.
engine_up() {
    "${DOCKER:-docker}" -H "$1" info >/dev/null 2>&1 || { pick_docker "$1" && "$DOCKER" -H "$1" info >/dev/null 2>&1; }
}

# wait_engine SOCKET_URL SECONDS: waits (bounded) until an engine answers there.
wait_engine() {
    local host=$1 deadline=$((SECONDS + $2))
    until engine_up "$host"; do
        (( SECONDS < deadline )) || return 1
        sleep 0.5
    done
}

# pid_alive PIDFILE: prints the pid and succeeds when the file names a running dockerd.
pid_alive() {
    local pid
    [[ -s $1 ]] || return 1
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/comm ]] || return 1
    is_live_dockerd "$pid" || return 1
    echo "$pid"
}

# is_live_dockerd PID: a running (not zombie) dockerd.
is_live_dockerd() {
    [[ $(cat "/proc/$1/comm" 2>/dev/null) == dockerd ]] || return 1
    local state
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
    [[ -n $state && $state != Z && $state != X ]]
}

# stop_pid PID: SIGTERM, wait up to 20 s, then SIGKILL.
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 80; i++)); do
        is_live_dockerd "$pid" || return 0
        sleep 0.25
    done
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
}
