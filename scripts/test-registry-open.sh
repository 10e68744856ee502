#!/usr/bin/env bash
# An open image registry for the pull tests (no login; scripts/test-registry.sh is the one with
# logins): Debian's docker-registry serving HTTPS on the test bridge, with a certificate from a
# test CA that the engines trust through their certs dirs, HOST:PORT/ca.crt: the machine's
# /etc/docker/certs.d (the default engine, which pushes) and each test host's own certs dir
# when it has one (/run/corral-test/hI/certs.d, see test-hosts.sh). Engines read them at each
# pull: nothing is restarted.
#
#   scripts/test-registry-open.sh up      ensure it runs and holds the test images; prints
#                                         "ADDRESS CA_FILE" (e.g. 10.213.0.1:5000 /run/…/ca.crt)
#   scripts/test-registry-open.sh down    stop it, remove its data and the engines' trust in it
#
# Images it holds (pushed from the default engine, then untagged there):
#   corral-test/busybox:1   the test image (scripts/build-test-image.sh)
#   corral-test/bulky:1     the test image plus 24 MiB of random bytes in its layer, so a pull
#                           takes long enough behind a throttled proxy to watch its progress
#
# The certificate is valid for the bridge address on any port, and the engines also trust it
# at PROXY_PORT (5001): tests may put a slow proxy there in front of the registry. Needs the
# test bridge (scripts/test-hosts.sh up N) and root.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib/common.sh"

[[ $(id -u) -eq 0 ]] || exec sudo -E "$0" "$@"

BRIDGE_IP=10.213.0.1
PORT=5000
PROXY_PORT=5001
ADDRESS=$BRIDGE_IP:$PORT
RUN_DIR=/run/corral-test/registry-open
DATA_DIR=/var/lib/corral-test/registry-open
RUN_ROOT=/run/corral-test
CERTS_D=/etc/docker/certs.d
START_TIMEOUT=20

answers() {
    curl -sf --max-time 2 --cacert "$RUN_DIR/ca.crt" "https://$ADDRESS/v2/" >/dev/null 2>&1
}

registry_pid() {
    local pid
    pid=$(cat "$RUN_DIR/registry.pid" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$RUN_DIR/registry.yml" || return 1
    echo "$pid"
}

make_certs() {
    [[ -s $RUN_DIR/ca.crt && -s $RUN_DIR/cert.pem && -s $RUN_DIR/key.pem ]] && return 0
    command -v openssl >/dev/null 2>&1 || die "openssl not found (scripts/setup.sh installs it)"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=corral test registry CA" \
        -keyout "$RUN_DIR/ca.key" -out "$RUN_DIR/ca.crt" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$BRIDGE_IP" \
        -keyout "$RUN_DIR/key.pem" -out "$RUN_DIR/cert.csr" >/dev/null 2>&1
    printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\n' "$BRIDGE_IP" >"$RUN_DIR/ext.cnf"
    openssl x509 -req -in "$RUN_DIR/cert.csr" -CA "$RUN_DIR/ca.crt" -CAkey "$RUN_DIR/ca.key" -CAcreateserial \
        -days 30 -extfile "$RUN_DIR/ext.cnf" -out "$RUN_DIR/cert.pem" >/dev/null 2>&1
    rm -f "$RUN_DIR/cert.csr" "$RUN_DIR/ext.cnf"
}

# The certs dirs of the engines: the machine's, and each test host's own.
certs_dirs() {
    echo "$CERTS_D"
    local d
    for d in "$RUN_ROOT"/h[0-9]*/certs.d; do
        [[ -d $d ]] && echo "$d"
    done
}

trust() {
    local port dir
    for dir in $(certs_dirs); do
        for port in "$PORT" "$PROXY_PORT"; do
            mkdir -p "$dir/$BRIDGE_IP:$port"
            cp "$RUN_DIR/ca.crt" "$dir/$BRIDGE_IP:$port/ca.crt"
        done
    done
}

start() {
    command -v docker-registry >/dev/null 2>&1 || die "docker-registry not found (scripts/setup.sh installs it)"
    ip -4 addr show 2>/dev/null | grep -q "inet $BRIDGE_IP/" || die "the test bridge ($BRIDGE_IP) is down: run scripts/test-hosts.sh up 1 first"
    mkdir -p "$RUN_DIR" "$DATA_DIR"
    make_certs
    trust
    if answers; then return 0; fi
    local pid
    if pid=$(registry_pid); then kill "$pid" 2>/dev/null || true; sleep 0.5; fi
    cat >"$RUN_DIR/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $DATA_DIR
http:
  addr: $ADDRESS
  tls:
    certificate: $RUN_DIR/cert.pem
    key: $RUN_DIR/key.pem
EOF
    setsid docker-registry serve "$RUN_DIR/registry.yml" >>"$RUN_DIR/registry.log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/registry.pid"
    disown || true
    local deadline=$((SECONDS + START_TIMEOUT))
    until answers; do
        if ((SECONDS >= deadline)); then
            tail -n 20 "$RUN_DIR/registry.log" >&2 || true
            die "the registry did not answer on https://$ADDRESS within ${START_TIMEOUT}s"
        fi
        sleep 0.2
    done
}

has_tag() {
    curl -sf --max-time 5 --cacert "$RUN_DIR/ca.crt" -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        "https://$ADDRESS/v2/$1/manifests/$2" >/dev/null 2>&1
}

# push LOCAL_IMAGE REPO TAG: pushes from the default engine, leaving it as it was.
push() {
    local local_image=$1 repo=$2 tag=$3
    has_tag "$repo" "$tag" && return 0
    "$DOCKER" tag "$local_image" "$ADDRESS/$repo:$tag"
    "$DOCKER" push -q "$ADDRESS/$repo:$tag" >/dev/null
    "$DOCKER" rmi "$ADDRESS/$repo:$tag" >/dev/null
    log "pushed $ADDRESS/$repo:$tag"
}

bulky_image() {
    local rootfs tag=corral-test/bulky:1
    if ! "$DOCKER" image inspect "$tag" >/dev/null 2>&1; then
        rootfs=$(mktemp -d)
        # The test image's files plus bytes that do not compress.
        local cid
        cid=$("$DOCKER" create corral-test/busybox:latest true)
        "$DOCKER" export "$cid" | tar -C "$rootfs" -xf -
        "$DOCKER" rm "$cid" >/dev/null
        head -c $((24 << 20)) /dev/urandom >"$rootfs/bulk"
        tar -C "$rootfs" --numeric-owner -cf - . | "$DOCKER" import -c 'CMD ["sh"]' -c 'ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin' - "$tag" >/dev/null
        rm -rf "$rootfs"
    fi
    echo "$tag"
}

up() {
    local sock=unix:///var/run/docker.sock
    pick_docker "$sock" || die "the default Docker engine does not answer (scripts/ensure-dockerd.sh)"
    export DOCKER_HOST=$sock
    start
    "$here/build-test-image.sh" "$sock" >/dev/null
    push corral-test/busybox:latest corral-test/busybox 1
    has_tag corral-test/bulky 1 || push "$(bulky_image)" corral-test/bulky 1
    echo "$ADDRESS $RUN_DIR/ca.crt"
}

down() {
    local pid port dir
    if pid=$(registry_pid); then
        kill "$pid" 2>/dev/null || true
    fi
    for dir in $(certs_dirs); do
        for port in "$PORT" "$PROXY_PORT"; do
            rm -rf "${dir:?}/$BRIDGE_IP:$port"
        done
    done
    rm -rf "${RUN_DIR:?}" "${DATA_DIR:?}"
}

case ${1:-} in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up | down" >&2; exit 2 ;;
esac
