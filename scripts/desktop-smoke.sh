#!/usr/bin/env bash
# End-to-end check of the desktop app under Xvfb, through what a user sees and does:
#  1. the app opens a window titled Corral showing the rendered web UI (a screenshot that is not
#     blank), its in-app control plane answers and keeps its database in the app's data dir;
#  2. closing the window with "keep running in the tray" hides it while the API keeps
#     answering; SIGTERM then stops the control plane cleanly and the app exits 0;
#  3. backup and restore through the same functions File → Back up / Restore database run
#     (the app's --backup / --restore switches): back up, add an environment, restore: it is
#     gone; restoring a file that is not a backup fails with a clear error and changes nothing;
#  4. closing the window asks "Keep Corral running in the tray?"; clicking "Stop Corral" stops the
#     control plane cleanly and the app exits 0.
# The admin token lives in the OS keyring, here the kernel keyring of a `keyctl session`
# (CORRAL_DESKTOP_KEYRING=keyutils): the data dir never holds an admin-token file, and the token
# the app keeps there works against the in-app API, also after a restart.
# The app listens on every interface, as it does for a user: its LAN port must speak TLS only, with
# the CA named in the join command, while the window uses a plain loopback listener.
# In step 2 the close question is answered by CORRAL_DESKTOP_ON_CLOSE=tray (the dialog's test hook).
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
for t in xvfb-run xdotool import convert curl keyctl openssl; do command -v "$t" >/dev/null || die "$t missing (scripts/setup.sh)"; done
/usr/bin/python3 -c 'import Xlib' 2>/dev/null || die "python3-xlib missing (scripts/setup.sh)"

# Everything below needs an X server and a session keyring of its own: run it inside a fresh
# Xvfb and `keyctl session`.
if [[ -z ${CORRAL_SMOKE_IN_XVFB:-} ]]; then
    CORRAL_SMOKE_IN_XVFB=1 exec timeout 300 xvfb-run -a -s '-screen 0 1280x800x24' \
        keyctl session - bash "$0" "$bin" "$shot"
fi
export CORRAL_DESKTOP_KEYRING=keyutils

mkdir -p "$(dirname "$shot")"
rm -f "$shot"
logdir=$(dirname "$shot")
applog=/dev/null
# The app gets a fresh data dir, config dir and ports of its own. It listens on every interface
# like a user's app; the checks only ever connect to loopback.
work=$(mktemp -d)
app=
cleanup() {
    [[ -n $app ]] && kill -9 "$app" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
export XDG_DATA_HOME=$work/data XDG_CONFIG_HOME=$work/config
lan_port=${CORRAL_SMOKE_PORT:-17070}
export CORRAL_DESKTOP_LISTEN=0.0.0.0:$lan_port
export CORRAL_DESKTOP_LOCAL_LISTEN=127.0.0.1:$((lan_port + 1))
api=http://$CORRAL_DESKTOP_LOCAL_LISTEN
data_dir=$XDG_DATA_HOME/io.corral.desktop
# The UI may add the environment to the title ("Corral — Default"); GTK's hidden leader window
# is named after the binary and must not match.
title_re='^Corral( — .*)?$'

fail() {
    log "FAIL: $*; app log ($applog):"
    tail -n 30 "$applog" >&2 || true
    exit 1
}

# start_app ON_CLOSE LOGNAME: starts the app, waits (bounded) for its window and its API.
start_app() {
    applog=$logdir/desktop-smoke-$2.log
    CORRAL_DESKTOP_ON_CLOSE=$1 "$bin" >"$applog" 2>&1 &
    app=$!
    window=
    for _ in $(seq 1 60); do
        kill -0 "$app" 2>/dev/null || fail "the desktop app exited early"
        window=$(xdotool search --onlyvisible --name "$title_re" 2>/dev/null | head -n 1) && [[ -n $window ]] && break
        sleep 0.5
    done
    [[ -n $window ]] || fail "no window titled Corral appeared"
    curl -sf "$api/v1/health" >/dev/null || fail "the in-app control plane does not answer at $api"
    [[ -e $data_dir/admin-token ]] && fail "the app wrote its admin token to a plaintext file"
    grep -q "plaintext file instead" "$applog" && fail "the app did not use the keyring"
    token=$(keyring_token) || fail "the admin token is not in the kernel keyring"
    curl -sf -H "Authorization: Bearer $token" "$api/v1/environments" >/dev/null ||
        fail "the admin token from the keyring is refused by the API"
}

# The admin token the app keeps in the session keyring (service corral-desktop, the data dir as
# the account; keyring-rs names kernel keys "keyring-rs:ACCOUNT@SERVICE").
keyring_token() {
    local key
    key=$(keyctl search @s user "keyring-rs:$data_dir@corral-desktop" 2>/dev/null) && keyctl pipe "$key"
}

# stop_waits: the app must exit by itself within 20 s, with status 0, after a clean stop.
expect_clean_exit() {
    local status=0
    for _ in $(seq 1 80); do kill -0 "$app" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$app" 2>/dev/null && fail "the app did not exit within 20 s"
    wait "$app" || status=$?
    app=
    ((status == 0)) || fail "the app exited with status $status"
    grep -q "control plane stopped cleanly" "$applog" || fail "the app exited without stopping its control plane cleanly"
}

close_window() { /usr/bin/python3 "$here/lib/close-window.py" "$window"; }

# POST /v1/environments; 0 when created, 2 when this build has no environment API.
create_environment() {
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' -d "{\"name\":\"$1\"}" "$api/v1/environments")
    case $code in
        201) return 0 ;;
        404 | 405) return 2 ;;
        *) fail "creating environment $1 answered HTTP $code" ;;
    esac
}

environments() { "$bin" --data-dir "$data_dir" --environments; }

# --- 1 and 2: the window, its rendered UI, then "keep running in the tray" and SIGTERM.
start_app tray window
# The window maps before the web view has painted; wait for a non-blank screen (bounded).
sd=0 colors=0
for _ in $(seq 1 20); do
    sleep 0.5
    import -window root "$shot" 2>/dev/null || continue
    sd=$(convert "$shot" -format '%[fx:standard_deviation]' info: 2>/dev/null || echo 0)
    colors=$(convert "$shot" -format '%k' info: 2>/dev/null || echo 0)
    awk -v s="$sd" -v c="$colors" 'BEGIN { exit !(s > 0.05 && c > 32) }' && break
done
log "screenshot $shot: standard deviation $sd, $colors colours"
awk -v s="$sd" -v c="$colors" 'BEGIN { exit !(s > 0.05 && c > 32) }' || fail "the window looks blank"
grep -q "control plane started inside the desktop app" "$applog" || fail "the app did not start its control plane"
first_token=$token
log "admin token in the kernel keyring, no admin-token file in the data dir; the API accepts it"
[[ -f $data_dir/corral.db ]] || fail "the app's control plane created no database in its data dir"
log "window: $(xdotool getwindowname "$window"); database in the app's data dir"

# The LAN port: plain HTTP is refused; over TLS it presents a certificate signed by the CA whose
# fingerprint the join command carries, valid for the address agents are told.
curl -sf -m 5 "http://127.0.0.1:$lan_port/v1/health" >/dev/null && fail "the LAN port answers plain HTTP"
join=$(curl -sf -H "Authorization: Bearer $token" "$api/v1/hosts/join-command") || fail "no join command from $api"
pin=$(python3 -c 'import json,sys; print(json.load(sys.stdin).get("ca_fingerprint") or "")' <<<"$join")
server_url=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["server_url"])' <<<"$join")
[[ $pin == sha256:* ]] || fail "the join command carries no CA fingerprint: $join"
[[ $server_url == https://*:$lan_port ]] || fail "agents are not told an https URL on port $lan_port: $server_url"
grep -qF -- "--ca-fingerprint $pin" <<<"$join" || fail "the join command does not pin $pin: $join"
curl -sfk "https://127.0.0.1:$lan_port/v1/ca.pem" -o "$work/ca.pem" || fail "the LAN port serves no CA over TLS"
got=sha256:$(openssl x509 -in "$work/ca.pem" -outform DER | sha256sum | cut -d' ' -f1)
[[ $got == "$pin" ]] || fail "the CA served ($got) is not the one the join command pins ($pin)"
lan_host=${server_url#https://}
lan_host=${lan_host%:*}
curl -sf -m 5 --cacert "$work/ca.pem" --connect-to "$lan_host:$lan_port:127.0.0.1:$lan_port" \
    "https://$lan_host:$lan_port/v1/health" >/dev/null ||
    fail "the LAN port's certificate does not verify against the pinned CA for $lan_host"
log "LAN port $lan_port: TLS only, certificate for $lan_host signed by the pinned CA $pin"

env_api=1
create_environment SMOKE-BEFORE || { [[ $? == 2 ]] && env_api=0; }
close_window
for _ in $(seq 1 20); do
    [[ -z $(xdotool search --onlyvisible --name "$title_re" 2>/dev/null) ]] && break
    sleep 0.25
done
[[ -z $(xdotool search --onlyvisible --name "$title_re" 2>/dev/null) ]] || fail "the window is still shown after closing it (tray)"
kill -0 "$app" 2>/dev/null || fail "the app exited although it was to keep running in the tray"
curl -sf "$api/v1/health" >/dev/null || fail "the API stopped answering while the app runs in the tray"
log "closed to the tray: window hidden, API still answers"
kill -TERM "$app"
expect_clean_exit
log "SIGTERM: control plane stopped cleanly, exit 0"

# --- 3: backup and restore through the menu's functions.
backup=$work/backup.db
out=$("$bin" --data-dir "$data_dir" --backup "$backup" 2>"$work/backup.err") || fail "backup failed: $(cat "$work/backup.err")"
[[ -s $backup ]] || fail "the backup wrote no file"
grep -qF "$backup" <<<"$out" || fail "the backup did not say where it wrote: $out"
log "backup: $out"

start_app "" ask
[[ $token == "$first_token" ]] || fail "after a restart the keyring holds another admin token"
log "restart: the same admin token, read back from the keyring"
((env_api)) && create_environment SMOKE-AFTER
# --- 4: the close question, answered "Stop Corral" with the mouse. Bare Xvfb has no window
# manager to give the dialog keyboard focus; its three buttons share its bottom row.
close_window
dialog=
for _ in $(seq 1 40); do
    dialog=$(xdotool search --onlyvisible --name '^Close Corral$' 2>/dev/null | head -n 1) && [[ -n $dialog ]] && break
    sleep 0.25
done
[[ -n $dialog ]] || fail "closing the window did not ask whether to keep Corral running"
eval "$(xdotool getwindowgeometry --shell "$dialog")"
xdotool mousemove --window "$dialog" $((WIDTH / 2)) $((HEIGHT - 16)) click 1
expect_clean_exit
log "closed, answered Stop Corral: control plane stopped cleanly, exit 0"

if ((env_api)); then
    before=$(environments)
    grep -qx SMOKE-AFTER <<<"$before" || fail "the Environment menu's list lacks the new environment: $before"
fi
out=$("$bin" --data-dir "$data_dir" --restore "$backup" 2>"$work/restore.err") || fail "restore failed: $(cat "$work/restore.err")"
log "restore: $out"
after=$(environments)
if ((env_api)); then
    grep -qx SMOKE-BEFORE <<<"$after" || fail "after the restore the backed-up environment is missing: $after"
    grep -qx SMOKE-AFTER <<<"$after" && fail "after the restore the environment added since the backup is still there"
    log "restore brought back the backed-up environments: $(tr '\n' ' ' <<<"$after")"
else
    log "this build has no POST /v1/environments: restore checked without a change"
fi

printf 'this is not a database\n' >"$work/bad.db"
if "$bin" --data-dir "$data_dir" --restore "$work/bad.db" >/dev/null 2>"$work/bad.err"; then
    fail "restoring a file that is not a backup succeeded"
fi
grep -qi "backup\|sqlite\|database" "$work/bad.err" || fail "restoring a bad file gave no clear error: $(cat "$work/bad.err")"
[[ $(environments) == "$after" ]] || fail "a failed restore changed the environments"
log "bad file refused: $(head -n 1 "$work/bad.err"); nothing changed"

echo "desktop smoke: OK (UI rendered, TLS on the LAN port with the pinned CA, admin token in the keyring and no file, tray and stop on close, backup/restore through the menu's functions)"
