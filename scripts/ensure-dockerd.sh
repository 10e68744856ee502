#!/usr/bin/env bash
# Makes sure the machine's default Docker engine (/var/run/docker.sock) runs, and that it holds
# the test image. Starts dockerd only when `docker info` fails, so it is safe to run any time.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib/common.sh"

SOCK=unix:///var/run/docker.sock
LOG=/var/log/corral-dockerd.log

if ! engine_up "$SOCK"; then
    command -v dockerd >/dev/null 2>&1 || die "dockerd not found (apt-get install docker.io)"
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
        log "starting docker via systemd"
        as_root systemctl start docker || true
    fi
    if ! wait_engine "$SOCK" 5; then
        # No init system to ask (containers, CI): run dockerd directly, detached.
        if pid=$(pid_alive /var/run/docker.pid); then
            log "dockerd $pid exists but does not answer yet; waiting"
        else
            log "starting dockerd (log: $LOG)"
            as_root rm -f /var/run/docker.pid
            as_root setsid dockerd >>"$LOG" 2>&1 </dev/null &
        fi
    fi
    if ! wait_engine "$SOCK" 60; then
        tail -n 30 "$LOG" >&2 || true
        die "the default Docker engine did not answer within 60 s"
    fi
fi
pick_docker "$SOCK" || die "no docker client can talk to $SOCK"
"$here/build-test-image.sh" "$SOCK"
log "engine $SOCK is up ($("$DOCKER" -H "$SOCK" version --format 'server {{.Server.Version}}, API {{.Server.APIVersion}}'))"
