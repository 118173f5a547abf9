#!/usr/bin/env bash
# Install the host packages skiff needs to build and run (Debian 12, as root).
# Idempotent: when everything is present it only runs dpkg-query and exits.
set -euo pipefail

PKGS=(
	qemu-system-x86   # qemu-system-x86_64
	busybox-static    # demo bundle rootfs, benchmark tools
	cpio              # initramfs
	xz-utils          # kernel payload extraction
	kmod              # depmod/modprobe to order the guest modules
	runc              # reference runtime for comparison tests
	podman            # the podman tests drive skiff through it
	conmon
	crun              # podman's default runtime, for comparisons
	netavark          # podman's network backend (bridge, port mapping)
	aardvark-dns
	iptables          # netavark's port forwarding
	iproute2
	ca-certificates
	make
	git
)

missing=()
for p in "${PKGS[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[[ $status == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]})); then
	if [[ $(id -u) -ne 0 ]]; then
		echo "install-deps: missing packages: ${missing[*]}" >&2
		echo "install-deps: run as root (or: sudo $0) to install them" >&2
		exit 1
	fi
	echo "install-deps: installing ${missing[*]}" >&2
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

# Go toolchain: the one on PATH, else the official tarball location.
if command -v go >/dev/null 2>&1; then
	GO=$(command -v go)
elif [[ -x /usr/local/go/bin/go ]]; then
	GO=/usr/local/go/bin/go
else
	echo "install-deps: no Go toolchain found (neither 'go' on PATH nor /usr/local/go/bin/go)." >&2
	echo "install-deps: install Go >= $(sed -n 's/^go //p' "$(dirname "$0")/../go.mod") from https://go.dev/dl/ into /usr/local/go" >&2
	exit 1
fi
"$GO" version >/dev/null
