#!/usr/bin/env bash
# Install the host packages skiff needs to build and run (Debian 12, as root).
# Idempotent: when everything is present it only runs dpkg-query and exits.
set -euo pipefail

PKGS=(
	qemu-system-x86   # qemu-system-x86_64
	qemu-system-common # virtiofsd and virtfs-proxy-helper: the confined file servers
	busybox-static    # demo bundle rootfs, benchmark tools
	cpio              # initramfs
	xz-utils          # kernel payload extraction
	kmod              # depmod/modprobe to order the guest modules
	e2fsprogs         # mkfs.ext4: each sandbox's scratch disk
	runc              # reference runtime for comparison tests
	containerd        # the CRI tests (tests/cri) start a private containerd
	containernetworking-plugins  # its pods' network: bridge, host-local, loopback (/usr/lib/cni)
	podman            # the podman tests drive skiff through it
	conmon
	crun              # podman's default runtime, for comparisons
	runsc             # gVisor: the peer sandbox make bench compares with
	netavark          # podman's network backend (bridge, port mapping)
	aardvark-dns
	slirp4netns       # rootless podman's default network
	debootstrap       # the nested-build test's rootfs (scripts/nested-rootfs.sh)
	uidmap            # newuidmap/newgidmap: rootless podman's user namespace
	iptables          # netavark's port forwarding
	iproute2
	ca-certificates
	make
	git
	curl              # Go, when the machine has none (from the module proxy)
	unzip
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

# Go toolchain: the one on PATH, else /usr/local/go; on a machine with
# neither, the version go.mod names is installed into /usr/local/go from
# the Go module proxy (the toolchain module `go` itself downloads).
GO_VERSION=$(sed -n 's/^go //p' "$(dirname "$0")/../go.mod")
GO_DIR=${GO_INSTALL_DIR:-/usr/local/go}
if command -v go >/dev/null 2>&1; then
	GO=$(command -v go)
elif [[ -x $GO_DIR/bin/go ]]; then
	GO=$GO_DIR/bin/go
else
	case $(uname -m) in
	x86_64) arch=amd64 ;;
	aarch64) arch=arm64 ;;
	*) echo "install-deps: no Go toolchain, and none to download for $(uname -m): install Go $GO_VERSION into $GO_DIR" >&2; exit 1 ;;
	esac
	proxy=${GOPROXY:-https://proxy.golang.org}
	proxy=${proxy%%,*}
	url="$proxy/golang.org/toolchain/@v/v0.0.1-go$GO_VERSION.linux-$arch.zip"
	echo "install-deps: installing Go $GO_VERSION into $GO_DIR from $url" >&2
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	curl -fsSL --retry 3 -o "$tmp/go.zip" "$url"
	unzip -q "$tmp/go.zip" -d "$tmp/x"
	rm -rf "$GO_DIR"
	mkdir -p "$(dirname "$GO_DIR")"
	mv "$tmp/x/golang.org/toolchain@v0.0.1-go$GO_VERSION.linux-$arch" "$GO_DIR"
	chmod +x "$GO_DIR"/bin/* "$GO_DIR"/pkg/tool/*/* 2>/dev/null || true
	GO=$GO_DIR/bin/go
fi
"$GO" version >/dev/null
