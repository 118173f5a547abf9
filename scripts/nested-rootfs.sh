#!/usr/bin/env bash
# The nested-build test's rootfs (tests/nested_build_test.go): Debian
# bookworm, minbase, with podman, buildah and crun from Debian's packages,
# made by debootstrap once and cached (rebuilt when the package list
# changes).
#
#   scripts/nested-rootfs.sh [DEST]     (default /var/cache/skiff-test/bookworm-build)
#
# ~2 min and ~330 MB here. fuse-overlayfs is left out: containers/storage
# would fall back to it where the kernel's overlay does not fit, and the
# test wants the kernel's overlay, on the guest's scratch disk.
set -euo pipefail
DEST=${1:-/var/cache/skiff-test/bookworm-build}
PKGS=podman,buildah,crun,busybox-static,libcap2-bin,netavark,iptables
if [[ -f $DEST/.skiff-key && $(cat "$DEST/.skiff-key") == "$PKGS" ]]; then
	exit 0
fi
# The machine's own Debian mirror (the one apt uses), unless DEBIAN_MIRROR
# says otherwise.
apt_mirror() {
	{ grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
	  grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}'
	} | grep -v -- '-security' | head -n 1 || true
}
MIRROR=${DEBIAN_MIRROR:-$(apt_mirror)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
command -v debootstrap >/dev/null || { echo "nested-rootfs: debootstrap missing (scripts/install-deps.sh installs it)" >&2; exit 1; }
mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST.tmp"
debootstrap --variant=minbase --include="$PKGS" bookworm "$DEST.tmp" "$MIRROR" >"$DEST.log" 2>&1 ||
	{ echo "nested-rootfs: debootstrap failed; the end of $DEST.log:" >&2; tail -n 20 "$DEST.log" >&2; exit 1; }
# podman's network lock lives here; the test mounts a tmpfs on it (the
# rootfs is read-only), which needs the directory.
mkdir -p "$DEST.tmp/etc/containers/networks"
rm -f "$DEST.tmp/usr/bin/fuse-overlayfs"
echo "$PKGS" >"$DEST.tmp/.skiff-key"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
