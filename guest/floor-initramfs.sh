#!/usr/bin/env bash
# Build the benchmark "floor" initramfs:
#
#   guest/floor-initramfs.sh OUT
#
# /init is guest/floor (a static Go program that powers off at once) and
# /dev/console exists; nothing else. Booting it gives the lowest possible
# cold-start time for a kernel + QEMU configuration. Reproducible (fixed
# mtimes, owner 0:0, sorted entries); uncompressed, like the guest image.
set -euo pipefail
[[ $# -eq 1 ]] || { echo "usage: $0 OUT" >&2; exit 2; }
OUT=$1
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

if command -v go >/dev/null 2>&1; then GO=${GO:-go}; else GO=${GO:-/usr/local/go/bin/go}; fi
EPOCH=${SOURCE_DATE_EPOCH:-0}

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/dev" "$STAGE/sys" "$(dirname "$OUT")"
CGO_ENABLED=0 "$GO" build -buildvcs=false -trimpath -ldflags "-s -w" -o "$STAGE/init" ./guest/floor
mknod -m 0600 "$STAGE/dev/console" c 5 1
chmod 0755 "$STAGE" "$STAGE/dev" "$STAGE/sys"
find "$STAGE" -exec touch -h -d "@$EPOCH" {} +
(cd "$STAGE" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
	cpio -o -H newc --quiet --owner 0:0 --reproducible) >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
