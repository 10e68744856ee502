#!/usr/bin/env bash
# Builds the test image corral-test/busybox:latest in one Docker engine.
#
# No image registry is reachable from the test machines, so the image is made locally with
# `docker import` from Debian's busybox-static: a rootfs holding /bin/busybox and its applet
# links. Idempotent: does nothing when the engine already has this image. An image of the same
# name made some other way (without our label, e.g. missing /www or applets) is replaced.
#
# usage: scripts/build-test-image.sh [DOCKER_HOST]   (default: $DOCKER_HOST or the local engine)
set -euo pipefail

IMAGE=corral-test/busybox:latest
# Bump when the image's contents change, so engines that hold an older build get the new one.
IMAGE_REV=1
if [[ $# -ge 1 && -n "$1" ]]; then
    export DOCKER_HOST="$1"
fi
DOCKER=${DOCKER:-docker}

have=$("$DOCKER" image inspect -f '{{ index .Config.Labels "io.corral.test-image" }}' "$IMAGE" 2>/dev/null || true)
if [[ "$have" == "$IMAGE_REV" ]]; then
    exit 0
fi

BUSYBOX=/usr/bin/busybox
[[ -x /bin/busybox ]] && BUSYBOX=/bin/busybox
if ! "$BUSYBOX" --list 2>/dev/null | grep -qx httpd; then
    echo "build-test-image: $BUSYBOX is missing or not busybox-static (apt-get install busybox-static)" >&2
    exit 1
fi
if file -L "$BUSYBOX" 2>/dev/null | grep -q 'dynamically linked'; then
    echo "build-test-image: $BUSYBOX is dynamically linked; busybox-static is needed" >&2
    exit 1
fi

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,tmp,www,etc,root,var/run,proc,sys,dev}
chmod 1777 "$rootfs/tmp"
cp "$BUSYBOX" "$rootfs/bin/busybox"
# Link every applet this busybox has (sh, httpd, sleep, ls, cat, echo, wget, nc, hostname,
# mkdir, true, ...) into /bin, so images behave like the busybox image people know.
for applet in $("$BUSYBOX" --list); do
    [[ "$applet" == busybox ]] && continue
    ln -sf busybox "$rootfs/bin/$applet"
done
for required in sh httpd sleep ls cat echo wget nc hostname mkdir true; do
    if [[ ! -e "$rootfs/bin/$required" ]]; then
        echo "build-test-image: busybox lacks the applet $required" >&2
        exit 1
    fi
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
echo 'root:x:0:' >"$rootfs/etc/group"
echo '<html><body>corral test image</body></html>' >"$rootfs/www/index.html"

tar -C "$rootfs" --numeric-owner -cf - . \
    | "$DOCKER" import -c 'CMD ["sh"]' -c "LABEL io.corral.test-image=$IMAGE_REV" -c 'ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin' - "$IMAGE" >/dev/null
"$DOCKER" image inspect "$IMAGE" >/dev/null
echo "build-test-image: imported $IMAGE into ${DOCKER_HOST:-the local engine}"
