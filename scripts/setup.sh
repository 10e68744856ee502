#!/usr/bin/env bash
# Idempotent setup of a fresh Debian 12 / Ubuntu machine for building, running and testing Corral.
# Installs the Debian packages the build and the tests need (skipped when all are present), Rust
# (only when cargo is missing) and Node.js/npm (only when node is missing), then builds the web UI
# into ui/dist, which the desktop crate embeds and the control plane serves.
#
#   SKIP_UI=1 scripts/setup.sh     skip the web UI build
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib/common.sh"

PACKAGES=(
    # Docker engines for the tests; the test image is built from busybox-static.
    docker.io busybox-static iproute2 iptables curl
    # Rust builds and the desktop app (Tauri 2 on WebKitGTK 4.1).
    build-essential pkg-config file libssl-dev
    libwebkit2gtk-4.1-dev libgtk-3-dev librsvg2-dev libayatana-appindicator3-dev libxdo-dev
    # Desktop window tests under Xvfb, with screenshots.
    xvfb xauth imagemagick xdotool python3-xlib
    # Desktop keyring tests: the kernel keyring (keyctl session).
    keyutils
    # Desktop TLS check: the fingerprint of the CA its LAN port presents.
    openssl
    # Browser tests.
    chromium fonts-liberation
    # Load-balancer benchmark (bench-lb): the load generator and the proxy it compares against.
    wrk haproxy
    # Monitoring test: promtool checks the /metrics page.
    prometheus
    # Pull and registry tests: an open registry and a private one (TLS, htpasswd logins)
    # the agents pull from (scripts/test-registry.sh).
    docker-registry apache2-utils
    # Overlay tunnel test: captures the link between two namespaces to show no clear text on it.
    tcpdump
    # Network benchmarks (bench-overlay, bench-network): TCP throughput, and jq to read its JSON.
    iperf3 jq
)

missing=()
for p in "${PACKAGES[@]}"; do
    if [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) != installed ]]; then
        missing+=("$p")
    fi
done
need_node=0
command -v node >/dev/null 2>&1 || need_node=1
if ((need_node)); then
    missing+=(nodejs)
    # The distribution's nodejs needs the separate npm package; NodeSource's nodejs ships npm.
    command -v npm >/dev/null 2>&1 || missing+=(npm)
fi

if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -q
    as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    log "Debian packages: all present"
fi

# Rust: the machine's toolchain if any; rustup only when cargo is missing (it needs the network).
if ! command -v cargo >/dev/null 2>&1 && [[ -x $HOME/.cargo/bin/cargo ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    log "cargo not found; installing Rust with rustup"
    if command -v rustup >/dev/null 2>&1; then
        rustup toolchain install stable --profile minimal && rustup default stable
    else
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    fi
    export PATH="$HOME/.cargo/bin:$PATH"
    command -v cargo >/dev/null 2>&1 || die "Rust is not installed and rustup could not install it"
fi
log "$(cargo --version)"

# Vite 8 needs Node.js >= 20.19 (Debian 12's own nodejs is 18).
node_version=$(node --version 2>/dev/null | sed 's/^v//')
if [[ -n $node_version ]]; then
    IFS=. read -r nmaj nmin _ <<<"$node_version"
    if ((nmaj < 20 || (nmaj == 20 && nmin < 19))); then
        log "warning: Node.js $node_version is older than 20.19; the web UI build (Vite 8) needs 20.19 or newer"
    fi
fi

if [[ ${SKIP_UI:-0} != 1 ]]; then
    cd "$root/ui"
    # npm ci when the lockfile matches what is installed is wasted time on reruns: skip it then.
    stamp=node_modules/.corral-lock-stamp
    if [[ ! -f $stamp ]] || ! cmp -s package-lock.json "$stamp"; then
        if [[ -f package-lock.json ]]; then
            npm ci --no-audit --no-fund
        else
            npm install --no-audit --no-fund
        fi
        cp package-lock.json "$stamp"
    fi
    npm run build --silent
    [[ -f dist/index.html ]] || die "the web UI build did not produce ui/dist/index.html"
    log "web UI built into ui/dist"
fi
