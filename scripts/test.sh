#!/usr/bin/env bash
# Sets up the machine and runs every test: the Rust workspace's tests over real Docker engines
# (one default engine plus three test hosts in network namespaces), the web UI's own tests when it
# has any, and a smoke test of the desktop window under Xvfb. Exits non-zero on any failure.
#
#   scripts/test.sh                  everything
#   scripts/test.sh -- ARGS          extra arguments for `cargo test --workspace` (e.g. a filter)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib/common.sh"
cd "$root"

[[ ${1:-} == -- ]] && shift
started=$SECONDS
step() { printf '\n=== %s (%ds)\n' "$*" "$((SECONDS - started))" >&2; }

step "setup"
"$here/setup.sh"
if ! command -v cargo >/dev/null 2>&1; then export PATH="$HOME/.cargo/bin:$PATH"; fi

step "Docker engines"
"$here/ensure-dockerd.sh"
# Always take the test hosts down again, whatever happens below.
cleanup() {
    local rc=$?
    step "test registries and test hosts down"
    "$here/test-registry.sh" down || log "test-registry.sh down failed"
    "$here/test-hosts.sh" down || log "test-hosts.sh down failed"
    exit "$rc"
}
trap cleanup EXIT
"$here/test-hosts.sh" up 3
"$here/test-registry.sh" up >/dev/null

step "build (cargo build --workspace --all-targets)"
cargo build --workspace --all-targets

step "Rust tests (cargo test --workspace)"
cargo test --workspace --no-fail-fast "$@"

if node -e 'process.exit(require("./ui/package.json").scripts?.test ? 0 : 1)' 2>/dev/null; then
    step "web UI tests (npm test)"
    npm --prefix ui test
fi

step "desktop window smoke test"
"$here/desktop-smoke.sh" "$root/target/debug/corral-desktop" "$root/target/desktop-smoke.png"

step "all tests passed"
