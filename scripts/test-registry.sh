#!/usr/bin/env bash
# The image registries the tests pull from: two instances of Debian's docker-registry on the test
# bridge, both serving HTTPS with one certificate from one test CA, both holding the test image.
#
#   open     10.213.0.1:5000  no login. Every engine trusts it, as a machine trusts the registries
#                             its admin set up: the CA is in each engine's certs dir (the
#                             machine's /etc/docker/certs.d for the default engine, which pushes,
#                             and each test host's own, /run/corral-test/hI/certs.d, see
#                             test-hosts.sh), also for 10.213.0.1:5001, where a test may put a
#                             slow proxy in front of it. Holds corral-test/busybox:1 and
#                             corral-test/bulky:1 (the test image plus 24 MiB that do not
#                             compress, so a throttled pull lasts long enough to watch).
#   private  10.213.0.1:5443  htpasswd logins. Only the default engine trusts it (to push); a test
#                             host's engine trusts it once a Corral agent installs its CA. Holds
#                             corral-test/busybox:latest.
#
#   scripts/test-registry.sh up      ensure both run and hold their images; prints
#                                    "open ADDRESS CA_FILE" and
#                                    "private ADDRESS CA_FILE USER PASSWORD" (the tests read these)
#   scripts/test-registry.sh down [--purge]
#                                    stop both and take their CA out of the engines' certs dirs
#                                    (--purge also deletes the CA, certificate and images)
#
# Needs root and the test bridge (scripts/test-hosts.sh up N). Engines read their certs dirs at
# each pull: nothing is restarted. Idempotent: `up` reuses what an earlier run made and pushed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib/common.sh"

[[ $(id -u) -eq 0 ]] || exec sudo -E "$0" "$@"

OPEN=$TEST_BRIDGE_IP:5000
OPEN_PROXY=$TEST_BRIDGE_IP:5001
PRIVATE=$TEST_BRIDGE_IP:5443
USER_NAME=corral-test
PASSWORD=corral-test-registry-pw
DIR=/var/lib/corral-test/registry
RUN_ROOT=/run/corral-test
CERTS_D=/etc/docker/certs.d
START_TIMEOUT=20
SOCK=unix:///var/run/docker.sock

# The HTTP status of a request to a registry's API (with the login for the private one), 000
# when it does not answer.
api_status() {
    local address=$1 path=$2 login=()
    [[ $address == "$PRIVATE" ]] && login=(-u "$USER_NAME:$PASSWORD")
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$DIR/ca.crt" "${login[@]}" \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "https://$address/v2/$path" || true
}

make_certificates() {
    [[ -s $DIR/ca.crt && -s $DIR/server.crt && -s $DIR/server.key ]] && return 0
    command -v openssl >/dev/null 2>&1 || die "openssl not found (scripts/setup.sh installs it)"
    log "making the test CA and the registries' certificate"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
        -subj "/CN=Corral test registry CA" -keyout "$DIR/ca.key" -out "$DIR/ca.crt" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=$TEST_BRIDGE_IP" -keyout "$DIR/server.key" -out "$DIR/server.csr" 2>/dev/null
    # An IP address names no port: one certificate serves both registries and the proxy.
    openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" -CAcreateserial -days 3650 \
        -extfile <(printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\n' "$TEST_BRIDGE_IP") -out "$DIR/server.crt" 2>/dev/null
    rm -f "$DIR/server.csr"
    chmod 600 "$DIR/ca.key" "$DIR/server.key"
}

# The certs dirs of the engines: the machine's, and each test host's own.
certs_dirs() {
    echo "$CERTS_D"
    local d
    for d in "$RUN_ROOT"/h[0-9]*/certs.d; do
        [[ -d $d ]] && echo "$d"
    done
}

# Which engines trust which registry (see the top of this file).
trust() {
    local dir address
    for dir in $(certs_dirs); do
        for address in "$OPEN" "$OPEN_PROXY"; do
            install -D -m 0644 "$DIR/ca.crt" "$dir/$address/ca.crt"
        done
    done
    install -D -m 0644 "$DIR/ca.crt" "$CERTS_D/$PRIVATE/ca.crt"
}

untrust() {
    local dir
    for dir in $(certs_dirs); do
        rm -rf "${dir:?}/$OPEN" "${dir:?}/$OPEN_PROXY"
    done
    rm -rf "${CERTS_D:?}/$PRIVATE"
}

# write_config NAME ADDRESS: the registry NAME's config, with logins for the private one.
write_config() {
    local name=$1 address=$2
    mkdir -p "$DIR/$name/data"
    cat >"$DIR/$name/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $DIR/$name/data
  delete:
    enabled: true
http:
  addr: $address
  tls:
    certificate: $DIR/server.crt
    key: $DIR/server.key
EOF
    if [[ $name == private ]]; then
        # bcrypt: the only hash the registry's htpasswd reads.
        htpasswd -Bbn "$USER_NAME" "$PASSWORD" >"$DIR/$name/htpasswd"
        printf 'auth:\n  htpasswd:\n    realm: corral-test\n    path: %s\n' "$DIR/$name/htpasswd" >>"$DIR/$name/config.yml"
    fi
}

registry_pid() {
    local pid
    pid=$(cat "$DIR/$1/registry.pid" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ && $(cat "/proc/$pid/comm" 2>/dev/null) == docker-registry ]] || return 1
    echo "$pid"
}

# start NAME ADDRESS: ensures the registry NAME answers on ADDRESS.
start() {
    local name=$1 address=$2 pid
    write_config "$name" "$address"
    if registry_pid "$name" >/dev/null && [[ $(api_status "$address" "") == 200 ]]; then
        return 0
    fi
    if pid=$(registry_pid "$name"); then
        log "the $name registry ($pid) does not answer; restarting it"
        kill "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    setsid docker-registry serve "$DIR/$name/config.yml" >>"$DIR/$name/registry.log" 2>&1 </dev/null &
    echo $! >"$DIR/$name/registry.pid"
    disown || true
    local deadline=$((SECONDS + START_TIMEOUT))
    until [[ $(api_status "$address" "") == 200 ]]; do
        if ((SECONDS >= deadline)); then
            tail -n 20 "$DIR/$name/registry.log" >&2 || true
            die "the $name test registry did not answer on https://$address within ${START_TIMEOUT}s"
        fi
        sleep 0.2
    done
}

# push LOCAL_IMAGE ADDRESS REPO:TAG: pushes from the default engine (with a docker config of its
# own, so the machine's logins stay as they were), leaving the engine's images as they were.
push() {
    local local_image=$1 address=$2 ref=$3 config ok=0
    [[ $(api_status "$address" "${ref%%:*}/manifests/${ref##*:}") == 200 ]] && return 0
    config=$(mktemp -d)
    "$DOCKER" -H "$SOCK" tag "$local_image" "$address/$ref"
    if { [[ $address != "$PRIVATE" ]] ||
        echo "$PASSWORD" | DOCKER_CONFIG=$config "$DOCKER" -H "$SOCK" login --username "$USER_NAME" --password-stdin "$address" >/dev/null 2>&1; } &&
        DOCKER_CONFIG=$config "$DOCKER" -H "$SOCK" push -q "$address/$ref" >/dev/null; then
        ok=1
    fi
    rm -rf "$config"
    "$DOCKER" -H "$SOCK" rmi "$address/$ref" >/dev/null
    ((ok)) || die "pushing $local_image to $address/$ref failed"
    log "pushed $address/$ref"
}

# The bulky image, made once on the default engine from the test image.
bulky_image() {
    local rootfs cid tag=corral-test/bulky:1
    if ! "$DOCKER" -H "$SOCK" image inspect "$tag" >/dev/null 2>&1; then
        rootfs=$(mktemp -d)
        cid=$("$DOCKER" -H "$SOCK" create corral-test/busybox:latest true)
        "$DOCKER" -H "$SOCK" export "$cid" | tar -C "$rootfs" -xf -
        "$DOCKER" -H "$SOCK" rm "$cid" >/dev/null
        head -c $((24 << 20)) /dev/urandom >"$rootfs/bulk"
        tar -C "$rootfs" --numeric-owner -cf - . |
            "$DOCKER" -H "$SOCK" import -c 'CMD ["sh"]' -c 'ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin' - "$tag" >/dev/null
        rm -rf "$rootfs"
    fi
    echo "$tag"
}

up() {
    command -v docker-registry >/dev/null 2>&1 || die "docker-registry not found (scripts/setup.sh installs it)"
    command -v htpasswd >/dev/null 2>&1 || die "htpasswd not found (scripts/setup.sh installs apache2-utils)"
    ip -4 addr show dev "$TEST_BRIDGE" 2>/dev/null | grep -q "inet $TEST_BRIDGE_IP/" ||
        die "the test bridge $TEST_BRIDGE ($TEST_BRIDGE_IP) is not up: run scripts/test-hosts.sh up N first"
    pick_docker "$SOCK" || die "the default Docker engine does not answer (scripts/ensure-dockerd.sh starts it)"
    mkdir -p "$DIR"
    make_certificates
    trust
    start open "$OPEN"
    start private "$PRIVATE"
    "$here/build-test-image.sh" "$SOCK" >/dev/null
    push corral-test/busybox:latest "$OPEN" corral-test/busybox:1
    [[ $(api_status "$OPEN" corral-test/bulky/manifests/1) == 200 ]] || push "$(bulky_image)" "$OPEN" corral-test/bulky:1
    push corral-test/busybox:latest "$PRIVATE" corral-test/busybox:latest
    echo "open $OPEN $DIR/ca.crt"
    echo "private $PRIVATE $DIR/ca.crt $USER_NAME $PASSWORD"
}

down() {
    local name pid
    for name in open private; do
        if pid=$(registry_pid "$name"); then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 40); do [[ -e /proc/$pid ]] || break; sleep 0.25; done
        fi
        rm -f "$DIR/$name/registry.pid"
    done
    untrust
    if [[ ${1:-} == --purge ]]; then rm -rf "${DIR:?}"; fi
    return 0
}

case ${1:-} in
    up) up ;;
    down) down "${2:-}" ;;
    *) echo "usage: $0 up | down [--purge]" >&2; exit 2 ;;
esac
