#!/usr/bin/env bash
# Starts the desktop app under Xvfb, waits for its "Corral" window, takes a screenshot and checks
# that the window shows something (not a blank or single-colour screen).
#
#   scripts/desktop-smoke.sh [BINARY] [SCREENSHOT.png]
#   defaults: target/debug/corral-desktop, target/desktop-smoke.png
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib/common.sh"

bin=${1:-$root/target/debug/corral-desktop}
shot=${2:-$root/target/desktop-smoke.png}
[[ -x $bin ]] || die "no desktop binary at $bin (cargo build --workspace)"
for t in xvfb-run xdotool import convert; do command -v "$t" >/dev/null || die "$t missing (scripts/setup.sh)"; done
mkdir -p "$(dirname "$shot")"
rm -f "$shot"
applog=$(dirname "$shot")/desktop-smoke.log
# The app starts its own control plane: give it a fresh data dir and a loopback port of its own.
appdata=$(mktemp -d)
trap 'rm -rf "$appdata"' EXIT
export XDG_DATA_HOME=$appdata CORRAL_DESKTOP_LISTEN=127.0.0.1:${CORRAL_SMOKE_PORT:-17070}
api=http://$CORRAL_DESKTOP_LISTEN

# The part that runs inside the X server: start the app, wait (bounded) for the window, give the
# web view a moment to paint, screenshot the whole screen, stop the app.
inner=$(cat <<'INNER'
set -u
bin=$1 shot=$2 applog=$3 API=$4
"$bin" >"$applog" 2>&1 &
app=$!
found=
for _ in $(seq 1 60); do
    if ! kill -0 "$app" 2>/dev/null; then echo "desktop app exited early" >&2; break; fi
    if xdotool search --name '^Corral$' >/dev/null 2>&1; then found=1; break; fi
    sleep 0.5
done
if [[ -n $found ]]; then
    # The in-app control plane answers on its port while the window is up.
    curl -sf "$API/v1/health" >/dev/null || { echo "the in-app control plane does not answer at $API" >&2; found=; }
fi
if [[ -n $found ]]; then
    # The window maps before the web view has painted; wait for a non-blank screen (bounded).
    for _ in $(seq 1 20); do
        sleep 0.5
        import -window root "$shot" 2>/dev/null || continue
        sd=$(convert "$shot" -format '%[fx:standard_deviation]' info: 2>/dev/null || echo 0)
        awk -v s="$sd" 'BEGIN { exit !(s > 0.05) }' && break
    done
fi
kill "$app" 2>/dev/null
for _ in $(seq 1 20); do kill -0 "$app" 2>/dev/null || break; sleep 0.25; done
kill -9 "$app" 2>/dev/null
[[ -n $found ]]
INNER
)
if ! timeout 120 xvfb-run -a -s '-screen 0 1280x800x24' bash -c "$inner" _ "$bin" "$shot" "$applog" "$api"; then
    log "no window titled Corral appeared; app log:"
    tail -n 30 "$applog" >&2 || true
    exit 1
fi
[[ -s $shot ]] || die "no screenshot was taken"
grep -q "control plane started inside the desktop app" "$applog" || die "the app did not start its control plane; log: $(tail -n 5 "$applog")"
db=$(find "$appdata" -name corral.db | head -n 1)
[[ -n $db ]] || die "the app's control plane created no database under its data dir"
log "the in-app control plane kept its database at ${db#"$appdata"/}"

sd=$(convert "$shot" -format '%[fx:standard_deviation]' info:)
colors=$(convert "$shot" -format '%k' info:)
log "screenshot $shot: standard deviation $sd, $colors colours"
if ! awk -v s="$sd" -v c="$colors" 'BEGIN { exit !(s > 0.05 && c > 32) }'; then
    log "the window looks blank; app log:"
    tail -n 30 "$applog" >&2 || true
    exit 1
fi
echo "desktop smoke: OK (a window titled Corral showed the UI)"
