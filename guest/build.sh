#!/usr/bin/env bash
# Build skiff's guest image from Debian packages, with no hand steps:
#
#   guest/build.sh OUTDIR AGENT_BINARY
#
# Produces
#   OUTDIR/vmlinux         uncompressed kernel of Debian's stock amd64 package
#                          (booted through QEMU's PVH entry with -kernel)
#   OUTDIR/initramfs.img   newc cpio: /init = the agent, the virtio/9p/net/overlay
#                          modules flat in /lib/modules/ + modules.order (load order),
#                          /bin/busybox (Debian's busybox-static) + /bin/sh, the
#                          shell of `skiff debug-console`
#   OUTDIR/guest.json      {kernelPackage, kernelPackageVersion, kernelVersion,
#                           agentSHA256, initramfsCompression, modules}
#
# Both outputs carry a key file (OUTDIR/.kernel.key, OUTDIR/.initramfs.key):
# the kernel is re-extracted only when the kernel package changes, the
# initramfs rebuilt only when the agent, the module set or this script changes.
# A run with nothing to do takes well under a second and touches nothing.
#
# Environment:
#   SKIFF_GUEST_CACHE   download/extraction cache (default: OUTDIR/../cache)
#   SKIFF_KERNEL_PKG    a specific linux-image-* package instead of the one
#                       linux-image-amd64 currently depends on
#   SKIFF_INITRD_COMPRESS  none|gzip|lz4|zstd (default: see COMPRESS below)
#   SOURCE_DATE_EPOCH   mtime of every file in the initramfs (default 0)
#   SKIFF_BUSYBOX       the static busybox to put in the guest
#                       (default /bin/busybox of Debian's busybox-static)
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"  # depmod, modprobe

usage() { echo "usage: $0 OUTDIR AGENT_BINARY" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
die() { echo "guest/build.sh: $*" >&2; exit 1; }
log() { echo "guest/build.sh: $*" >&2; }

OUT=$1
AGENT=$2
[[ -f $AGENT && -x $AGENT ]] || die "agent binary '$AGENT' is missing or not executable (build it first: make build/skiff-agent)"
SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
mkdir -p "$OUT"
OUT=$(readlink -f "$OUT")
CACHE=${SKIFF_GUEST_CACHE:-$(dirname "$OUT")/cache}
mkdir -p "$CACHE"
CACHE=$(readlink -f "$CACHE")

# Uncompressed measured fastest to /init under TCG (see the report in
# scripts/measure-initrd-compression.sh): the kernel's decompressors cost more
# than reading a few more MB of guest RAM.
COMPRESS=${SKIFF_INITRD_COMPRESS:-none}
EPOCH=${SOURCE_DATE_EPOCH:-0}

# Modules the agent loads at boot: virtio transport, console, 9p and net,
# and fuse for /dev/fuse in privileged containers (nested podman, buildah,
# fuse-overlayfs). Dependencies are resolved with modprobe. Nothing else
# (virtio_blk, overlay) until something uses it: every module costs boot
# time under TCG.
MODULES=(
	virtio virtio_ring virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
	virtio_console netfs fscache 9pnet 9pnet_virtio 9p
	virtio_net failover net_failover fuse
)

# Modules in the initramfs that the agent loads only when a container
# first needs the sandbox's scratch disk (lib/modules/modules.scratch), or
# while a VM template warms up: the disk's driver and filesystem, and
# overlay for image builds on it. Not loaded at boot, so that a cold boot
# does not pay for them (~0.3 s under TCG).
SCRATCH_MODULES=(virtio_blk ext4 overlay)

# Modules the agent loads when it first mounts a share over virtio-fs
# (lib/modules/modules.virtiofs): only cold-booted VMs share that way.
VIRTIOFS_MODULES=(virtiofs)

for t in apt-cache apt-get dpkg-deb depmod modprobe xz cpio sha256sum; do
	command -v "$t" >/dev/null || die "'$t' not found; run scripts/install-deps.sh"
done

# The debug console's shell. It must be static: the guest has no libc.
BUSYBOX=${SKIFF_BUSYBOX:-/bin/busybox}
[[ -f $BUSYBOX && -x $BUSYBOX ]] || die "'$BUSYBOX' not found; apt-get install busybox-static (or set SKIFF_BUSYBOX)"
ldd "$BUSYBOX" >/dev/null 2>&1 && die "'$BUSYBOX' is dynamically linked; the guest needs busybox-static's"

# ---------------------------------------------------------------- kernel ----

# The kernel package is what the metapackage linux-image-amd64 depends on
# today: "Depends: linux-image-6.1.0-NN-amd64 (= VERSION)". apt-cache takes
# ~0.5 s per call, so the answer is cached until apt's lists change.
apt_lists_key() {
	stat -c '%n %s %Y' /var/lib/apt/lists/*_Packages* 2>/dev/null | sha256sum | cut -d' ' -f1
}
resolve_kernel_pkg() {
	apt-cache show --no-all-versions linux-image-amd64 2>/dev/null |
		sed -n 's/^Depends:.*\(linux-image-[0-9][^ ,]*\) (= \([^)]*\)).*$/\1 \2/p' | head -n1
}

PKG=${SKIFF_KERNEL_PKG:-}
PKGVER=""
if [[ -n $PKG ]]; then
	PKGVER=$(apt-cache show --no-all-versions "$PKG" 2>/dev/null | sed -n 's/^Version: //p' | head -n1)
else
	RESOLVED="$CACHE/kernel-pkg.resolved"
	LISTS_KEY=$(apt_lists_key)
	cached_key=""
	[[ -f $RESOLVED ]] && read -r cached_key PKG PKGVER _ <"$RESOLVED" || true
	if [[ ${cached_key:-} != "$LISTS_KEY" || -z $PKG || -z $PKGVER ]]; then
		read -r PKG PKGVER _ <<<"$(resolve_kernel_pkg)" || true
		if [[ -z $PKG ]]; then
			log "apt-cache knows no linux-image-amd64; running apt-get update"
			apt-get update -qq || true
			LISTS_KEY=$(apt_lists_key)
			read -r PKG PKGVER _ <<<"$(resolve_kernel_pkg)" || true
		fi
		[[ -n $PKG && -n $PKGVER ]] && echo "$LISTS_KEY $PKG $PKGVER" >"$RESOLVED"
	fi
fi
if [[ -z $PKG || -z $PKGVER ]]; then
	# Offline fallback: the newest package already in the cache.
	deb=$(ls -1 "$CACHE"/linux-image-*-amd64_*_amd64.deb 2>/dev/null | sort -V | tail -n1 || true)
	[[ -n $deb ]] || die "cannot resolve the kernel package (apt-cache show linux-image-amd64 gave nothing) and none is cached in $CACHE"
	PKG=$(dpkg-deb -f "$deb" Package)
	PKGVER=$(dpkg-deb -f "$deb" Version)
	log "apt metadata unavailable; using cached $PKG $PKGVER"
fi

DEB="$CACHE/${PKG}_${PKGVER//:/%3a}_amd64.deb"
if [[ ! -s $DEB ]]; then
	log "downloading $PKG $PKGVER"
	tmp=$(mktemp -d "$CACHE/dl.XXXXXX")
	# apt-get download as root warns that _apt cannot reach the directory;
	# running the download as root avoids the sandbox dance.
	(cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$PKG=$PKGVER") ||
		{ rm -rf "$tmp"; die "apt-get download $PKG=$PKGVER failed"; }
	mv "$tmp"/*.deb "$DEB"
	rm -rf "$tmp"
fi

# The package is unpacked once per version into the cache (shared by every
# OUTDIR); vmlinux is extracted into OUTDIR when OUTDIR's key differs.
ROOT="$CACHE/root-${PKG}_${PKGVER//:/%3a}"
if [[ ! -f $ROOT/.unpacked ]]; then
	log "unpacking $PKG $PKGVER"
	rm -rf "$ROOT" "$ROOT.tmp"
	mkdir -p "$ROOT.tmp"
	dpkg-deb -x "$DEB" "$ROOT.tmp"
	kv=$(ls -1 "$ROOT.tmp/lib/modules" 2>/dev/null | head -n1)
	[[ -n $kv && -f $ROOT.tmp/boot/vmlinuz-$kv ]] || die "$DEB has no /boot/vmlinuz-* and /lib/modules/*"
	# The package ships no modules.dep; make one so modprobe can order them.
	depmod -b "$ROOT.tmp" "$kv"
	touch "$ROOT.tmp/.unpacked"
	mv "$ROOT.tmp" "$ROOT"
	# Drop the trees of older kernel packages.
	for d in "$CACHE"/root-*; do
		[[ $d == "$ROOT" || $d == *.tmp ]] || rm -rf "$d"
	done
fi
KVER=$(ls -1 "$ROOT/lib/modules" | head -n1)

KERNEL_KEY="$PKG $PKGVER $(stat -c %s "$DEB")"
if [[ ! -s $OUT/vmlinux || "$(cat "$OUT/.kernel.key" 2>/dev/null)" != "$KERNEL_KEY" ]]; then
	log "extracting vmlinux from $PKG $PKGVER"
	rm -f "$OUT/.kernel.key"
	# The bzImage's payload is xz: decompress from the first xz stream magic
	# (FD 37 7A 58 5A 00) that yields an ELF. xz complains about the data
	# after the stream (the bzImage trailer); the ELF check is what counts.
	vmlinuz="$ROOT/boot/vmlinuz-$KVER"
	ok=""
	for off in $(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$vmlinuz" | cut -d: -f1 | head -n5); do
		tail -c +$((off + 1)) "$vmlinuz" | xz -dc >"$OUT/vmlinux.tmp" 2>/dev/null || true
		if [[ $(head -c4 "$OUT/vmlinux.tmp" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]]; then
			ok=1
			break
		fi
	done
	[[ -n $ok ]] || { rm -f "$OUT/vmlinux.tmp"; die "no xz-compressed ELF found in $vmlinuz"; }
	mv "$OUT/vmlinux.tmp" "$OUT/vmlinux"
	echo "$KERNEL_KEY" >"$OUT/.kernel.key"
fi

# --------------------------------------------------------------- modules ----

# modprobe --show-depends prints "insmod PATH" in load order, dependencies
# first ("builtin NAME" for built-in ones, which need nothing).
# resolve_modules NAME MODULE...: adds the modules and what they depend
# on, but those already added, to MODPATHS, and their file names, in load
# order, to the array NAME.
MODPATHS=()
declare -A seen=()
resolve_modules() {
	local -n names=$1
	shift
	names=()
	local m deps kind path b
	for m in "$@"; do
		deps=$(modprobe -d "$ROOT" -S "$KVER" --show-depends "$m") || die "module $m not found in $PKG"
		while read -r kind path _; do
			[[ $kind == insmod ]] || continue
			b=$(basename "$path")
			[[ -n ${seen[$b]:-} ]] && continue
			seen[$b]=1
			MODPATHS+=("$path")
			names+=("${b%.xz}")
		done <<<"$deps"
	done
}
# Loaded at boot (modules.order), then on demand.
resolve_modules MODNAMES "${MODULES[@]}"
resolve_modules SCRATCHNAMES "${SCRATCH_MODULES[@]}"
resolve_modules VIRTIOFSNAMES "${VIRTIOFS_MODULES[@]}"

# ------------------------------------------------------------- initramfs ----

AGENT_SHA=$(sha256sum "$AGENT" | cut -d' ' -f1)
MODSUM=$(for p in "${MODPATHS[@]}"; do sha256sum "$p"; done | sed "s|$ROOT/||" | sha256sum | cut -d' ' -f1)
BUSYBOX_SHA=$(sha256sum "$BUSYBOX" | cut -d' ' -f1)
INITRD_KEY="agent=$AGENT_SHA busybox=$BUSYBOX_SHA modules=$MODSUM order=${MODNAMES[*]} scratch=${SCRATCHNAMES[*]} virtiofs=${VIRTIOFSNAMES[*]} compress=$COMPRESS epoch=$EPOCH script=$(sha256sum "$SCRIPT" | cut -d' ' -f1)"

if [[ -s $OUT/initramfs.img && "$(cat "$OUT/.initramfs.key" 2>/dev/null)" == "$INITRD_KEY" && -s $OUT/guest.json ]]; then
	exit 0
fi

# strip_signature drops the signature Debian appends to each module. The
# guest kernel does not enforce signatures (MODULE_SIG_FORCE is off), and
# checking an RSA signature of every module under TCG costs boot time; the
# modules come from the package we downloaded and verified with apt.
# Layout: ... | signature (sig_len bytes) | 12-byte struct whose last 4
# bytes are sig_len, big-endian | "~Module signature appended~\n" (28).
strip_signature() {
	local f=$1 magic size siglen
	magic=$(tail -c 28 "$f" | tr -d '\n')
	[[ $magic == "~Module signature appended~" ]] || return 0
	size=$(stat -c %s "$f")
	siglen=$(tail -c 32 "$f" | head -c 4 | od -An -tu4 --endian=big | tr -d ' ')
	truncate -s $((size - siglen - 40)) "$f"
}

log "building initramfs (${#MODNAMES[@]} modules, compression: $COMPRESS)"
rm -f "$OUT/.initramfs.key"
STAGE=$(mktemp -d "$CACHE/initramfs.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE"/{bin,dev,proc,sys,run,tmp,mnt,lib/modules}
install -m 0755 "$AGENT" "$STAGE/init"
install -m 0755 "$BUSYBOX" "$STAGE/bin/busybox"
ln -s busybox "$STAGE/bin/sh"
for p in "${MODPATHS[@]}"; do
	b=$(basename "$p")
	case $b in
	*.ko.xz) xz -dc "$p" >"$STAGE/lib/modules/${b%.xz}" ;;
	*) cp "$p" "$STAGE/lib/modules/$b" ;;
	esac
	chmod 0644 "$STAGE/lib/modules/${b%.xz}"
	strip_signature "$STAGE/lib/modules/${b%.xz}"
done
printf '%s\n' "${MODNAMES[@]}" >"$STAGE/lib/modules/modules.order"
printf '%s\n' "${SCRATCHNAMES[@]}" >"$STAGE/lib/modules/modules.scratch"
printf '%s\n' "${VIRTIOFSNAMES[@]}" >"$STAGE/lib/modules/modules.virtiofs"
chmod 0644 "$STAGE/lib/modules/modules."{order,scratch,virtiofs}
mknod -m 0600 "$STAGE/dev/console" c 5 1
mknod -m 0666 "$STAGE/dev/null" c 1 3
chmod 0755 "$STAGE"/{bin,dev,proc,sys,run,mnt,lib,lib/modules}
chmod 1777 "$STAGE/tmp"
find "$STAGE" -exec touch -h -d "@$EPOCH" {} +

compress() {
	case $COMPRESS in
	none) cat ;;
	gzip) gzip -n -9 ;;
	lz4) lz4 -l -9 -q ;; # the kernel needs the legacy lz4 frame
	zstd) zstd -q -19 ;;
	*) die "unknown SKIFF_INITRD_COMPRESS=$COMPRESS (none|gzip|lz4|zstd)" ;;
	esac
}
(cd "$STAGE" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
	cpio -o -H newc --quiet --owner 0:0 --reproducible) | compress >"$OUT/initramfs.img.tmp"
mv "$OUT/initramfs.img.tmp" "$OUT/initramfs.img"

mods_json=$(printf '"%s",' "${MODNAMES[@]}")
cat >"$OUT/guest.json.tmp" <<EOF
{
  "kernelPackage": "$PKG",
  "kernelPackageVersion": "$PKGVER",
  "kernelVersion": "$KVER",
  "agentSHA256": "$AGENT_SHA",
  "initramfsCompression": "$COMPRESS",
  "modules": [${mods_json%,}]
}
EOF
mv "$OUT/guest.json.tmp" "$OUT/guest.json"
echo "$INITRD_KEY" >"$OUT/.initramfs.key"
log "wrote $OUT/vmlinux, $OUT/initramfs.img ($(stat -c %s "$OUT/initramfs.img") bytes), $OUT/guest.json"
