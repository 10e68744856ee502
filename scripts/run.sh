#!/usr/bin/env bash
# Sets up the machine, builds Corral and runs it: the desktop app where there is a display, or
# else the headless control plane (web UI and API at http://HOST:7070).
# Arguments are passed to the program.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

"$here/setup.sh"
if ! command -v cargo >/dev/null 2>&1; then export PATH="$HOME/.cargo/bin:$PATH"; fi

if [[ -n ${DISPLAY:-} || -n ${WAYLAND_DISPLAY:-} ]]; then
    cargo build --release -p corral-desktop
    exec cargo run --release -p corral-desktop -- "$@"
else
    cargo build --release -p corral-cli --bin corral
    echo "run.sh: no display; starting the headless control plane (http://$(hostname -f 2>/dev/null || hostname):7070)" >&2
    exec cargo run --release -p corral-cli --bin corral -- server "$@"
fi
