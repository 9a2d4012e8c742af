#!/usr/bin/env bash
# System packages the test suite drives for real: Ceph's RADOS Gateway (an S3 server that
# checks signatures and expiry), Chromium (the dashboard's browser tests) and libjpeg's
# headers (the one-pass JPEG extension, which the suite requires under CI=true). Debian/Ubuntu;
# does nothing when they are already there.
set -euo pipefail
need=()
command -v radosgw >/dev/null || need+=(radosgw)
command -v ceph-mon >/dev/null || need+=(ceph-mon)
command -v ceph-osd >/dev/null || need+=(ceph-osd)
command -v chromium >/dev/null || need+=(chromium)
[ -e /usr/include/jpeglib.h ] || need+=(libjpeg-dev)  # for the one-pass JPEG extension
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "the tests need: ${need[*]} (apt-get install them, or run this script as root)" >&2
    exit 1
fi
echo "installing ${need[*]} for the test suite" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
