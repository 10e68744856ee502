#!/usr/bin/env bash
# A private image registry for the tests: Debian's docker-registry on the test bridge, with TLS
# from a test CA and htpasswd logins, holding the test image.
#
#   scripts/test-registry.sh up      ensure it runs and holds the test image; prints
#                                    "HOST CA_FILE USER PASSWORD" (the tests read this line)
#   scripts/test-registry.sh down [--purge]
#                                    stop it and take its CA out of the default engine's certs
#                                    dir (--purge also deletes its CA, certificates and images)
#
# It listens on 10.213.0.1:5443 (the bridge of scripts/test-hosts.sh, which must be up), reached
# by the test hosts over the test network and by the default engine, which pushes the test image
# (corral-test/busybox:latest) to it. The default engine trusts it through
# /etc/docker/certs.d/10.213.0.1:5443/ca.crt; the test hosts' engines read their own certs dirs
# (see test-hosts.sh), so they trust it only once a Corral agent installs the CA there.
# Idempotent: `up` reuses the CA, certificates and pushed image of an earlier run.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib/common.sh"

[[ $(id -u) -eq 0 ]] || exec sudo -E "$0" "$@"

BRIDGE=corral-br0
ADDRESS=10.213.0.1
PORT=5443
HOST="$ADDRESS:$PORT"
USER_NAME=corral-test
PASSWORD=corral-test-registry-pw
DIR=/var/lib/corral-test/registry
ENGINE_CERTS=/etc/docker/certs.d/$HOST
IMAGE=corral-test/busybox:latest
START_TIMEOUT=20

registry_pid() {
    local pid
    pid=$(cat "$DIR/registry.pid" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ && $(cat "/proc/$pid/comm" 2>/dev/null) == docker-registry ]] || return 1
    echo "$pid"
}

# The HTTP status of an authenticated request to the registry's API, 000 when it does not answer.
api_status() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$DIR/ca.crt" -u "$USER_NAME:$PASSWORD" "https://$HOST/v2/$1" || true
}

make_certificates() {
    [[ -s $DIR/ca.crt && -s $DIR/server.crt && -s $DIR/server.key ]] && return 0
    log "making the test CA and the registry's certificate"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
        -subj "/CN=Corral test registry CA" -keyout "$DIR/ca.key" -out "$DIR/ca.crt" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=$ADDRESS" -keyout "$DIR/server.key" -out "$DIR/server.csr" 2>/dev/null
    openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" -CAcreateserial -days 3650 \
        -extfile <(printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\n' "$ADDRESS") -out "$DIR/server.crt" 2>/dev/null
    chmod 600 "$DIR/ca.key" "$DIR/server.key"
}

write_config() {
    # bcrypt: the only hash the registry's htpasswd reads.
    htpasswd -Bbn "$USER_NAME" "$PASSWORD" >"$DIR/htpasswd"
    cat >"$DIR/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $DIR/data
  delete:
    enabled: true
http:
  addr: $HOST
  tls:
    certificate: $DIR/server.crt
    key: $DIR/server.key
auth:
  htpasswd:
    realm: corral-test
    path: $DIR/htpasswd
EOF
}

start() {
    if registry_pid >/dev/null && [[ $(api_status "") == 200 ]]; then
        return 0
    fi
    if pid=$(registry_pid); then
        log "docker-registry $pid does not answer; restarting it"
        kill "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    setsid docker-registry serve "$DIR/config.yml" >>"$DIR/registry.log" 2>&1 </dev/null &
    echo $! >"$DIR/registry.pid"
    disown || true
    local deadline=$((SECONDS + START_TIMEOUT))
    until [[ $(api_status "") == 200 ]]; do
        if ((SECONDS >= deadline)); then
            tail -n 20 "$DIR/registry.log" >&2 || true
            die "the test registry did not answer on https://$HOST within ${START_TIMEOUT}s"
        fi
        sleep 0.3
    done
}

push_test_image() {
    [[ $(api_status "${IMAGE%%:*}/manifests/${IMAGE##*:}") == 200 ]] && return 0
    log "pushing $IMAGE to $HOST with the default engine"
    local sock=unix:///var/run/docker.sock config
    pick_docker "$sock" || die "the default Docker engine does not answer (scripts/ensure-dockerd.sh starts it)"
    "$here/build-test-image.sh" "$sock" >/dev/null
    # A login of its own, so the machine's docker config is left as it was.
    config=$(mktemp -d)
    local ok=0
    "$DOCKER" -H "$sock" tag "$IMAGE" "$HOST/$IMAGE"
    if echo "$PASSWORD" | DOCKER_CONFIG=$config "$DOCKER" -H "$sock" login --username "$USER_NAME" --password-stdin "$HOST" >/dev/null 2>&1 &&
        DOCKER_CONFIG=$config "$DOCKER" -H "$sock" push "$HOST/$IMAGE" >/dev/null; then
        ok=1
    fi
    rm -rf "$config"
    "$DOCKER" -H "$sock" rmi "$HOST/$IMAGE" >/dev/null
    ((ok)) || die "pushing $IMAGE to $HOST failed"
}

up() {
    command -v docker-registry >/dev/null 2>&1 || die "docker-registry not found (scripts/setup.sh installs it)"
    command -v htpasswd >/dev/null 2>&1 || die "htpasswd not found (scripts/setup.sh installs apache2-utils)"
    ip -4 addr show dev "$BRIDGE" 2>/dev/null | grep -q "inet $ADDRESS/" || die "the test bridge $BRIDGE ($ADDRESS) is not up: run scripts/test-hosts.sh up N first"
    mkdir -p "$DIR/data" "$ENGINE_CERTS"
    make_certificates
    write_config
    install -m 0644 "$DIR/ca.crt" "$ENGINE_CERTS/ca.crt"
    start
    push_test_image
    echo "$HOST $DIR/ca.crt $USER_NAME $PASSWORD"
}

down() {
    local pid
    if pid=$(registry_pid); then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 40); do [[ -e /proc/$pid ]] || break; sleep 0.25; done
    fi
    rm -f "$DIR/registry.pid"
    rm -rf "$ENGINE_CERTS"
    if [[ ${1:-} == --purge ]]; then rm -rf "$DIR"; fi
    return 0
}

case ${1:-} in
    up) up ;;
    down) down "${2:-}" ;;
    *) echo "usage: $0 up | down [--purge]" >&2; exit 2 ;;
esac
