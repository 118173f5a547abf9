#!/usr/bin/env bash
# Build skiff's minimal guest kernel (`make kernel`), the optional faster
# alternative to Debian's stock kernel:
#
#   guest/build-kernel.sh OUTDIR
#   guest/build-kernel.sh --initramfs-only OUTDIR   (make guest: only refresh
#                   initramfs-minimal.img from a rebuilt initramfs.img)
#
# Produces
#   OUTDIR/vmlinux-minimal         uncompressed kernel from Debian's
#                                  linux-source-6.1: `make tinyconfig` plus
#                                  guest/kernel.config, nothing as modules
#   OUTDIR/initramfs-minimal.img   OUTDIR/initramfs.img (guest/build.sh's
#                                  output, built first) without its modules:
#                                  the minimal kernel has them built in
#   OUTDIR/kernel-minimal.json     what was built from what
#
# When both exist, skiff boots them by default on `-machine microvm`
# (config.resolveGuest). Remove them to go back to the stock kernel.
#
# Keys (OUTDIR/.kernel-minimal.key, OUTDIR/.initramfs-minimal.key): the
# kernel is reconfigured only when the source package or the fragment
# changes, and `make vmlinux` is incremental (~10 min on 2 cores from
# scratch, seconds when nothing changed); the initramfs is remade when
# initramfs.img changes. The build tree is CACHE/linux-build-minimal.
#
# Environment:
#   SKIFF_GUEST_CACHE   download/extraction/build cache (default OUTDIR/../cache)
#   SKIFF_KERNEL_SRC    a linux-source-*.tar.xz to use instead of the package
#   JOBS                make -j (default: nproc)
set -euo pipefail

die() { echo "guest/build-kernel.sh: $*" >&2; exit 1; }
log() { echo "guest/build-kernel.sh: $*" >&2; }
INITRAMFS_ONLY=
if [[ ${1:-} == --initramfs-only ]]; then
	INITRAMFS_ONLY=1
	shift
fi
[[ $# -eq 1 ]] || { echo "usage: $0 [--initramfs-only] OUTDIR" >&2; exit 2; }

OUT=$1
SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
FRAGMENT=$(dirname "$SCRIPT")/kernel.config
[[ -f $FRAGMENT ]] || die "missing $FRAGMENT"
mkdir -p "$OUT"
OUT=$(readlink -f "$OUT")
CACHE=${SKIFF_GUEST_CACHE:-$(dirname "$OUT")/cache}
mkdir -p "$CACHE"
CACHE=$(readlink -f "$CACHE")
JOBS=${JOBS:-$(nproc)}
PKG=linux-source-6.1

build_kernel() {
	for t in make gcc flex bison bc xz cpio sha256sum perl; do
		command -v "$t" >/dev/null || die "'$t' not found; install the kernel build tools: apt-get install build-essential flex bison bc libelf-dev cpio xz-utils"
	done
	[[ -f /usr/include/libelf.h || -f /usr/include/gelf.h ]] || die "libelf headers not found: apt-get install libelf-dev"

	# ---------------------------------------------------------------- source ----
	# The installed package's tarball if there is one, else the package
	# downloaded (and verified) by apt into the cache.
	SRC_TAR=${SKIFF_KERNEL_SRC:-}
	if [[ -z $SRC_TAR && -f /usr/src/$PKG.tar.xz ]]; then
		SRC_TAR=/usr/src/$PKG.tar.xz
	fi
	if [[ -z $SRC_TAR ]]; then
		deb=$(ls -1 "$CACHE"/${PKG}_*_all.deb 2>/dev/null | sort -V | tail -n1 || true)
		if [[ -z $deb ]]; then
			log "downloading $PKG with apt-get"
			(cd "$CACHE" && apt-get download "$PKG" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2) ||
				die "apt-get download $PKG failed (is a Debian 12 security/main source configured?)"
			deb=$(ls -1 "$CACHE"/${PKG}_*_all.deb | sort -V | tail -n1)
		fi
		SRC_TAR=$CACHE/$(basename "$deb" .deb).tar.xz
		if [[ ! -f $SRC_TAR ]]; then
			dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/src/$PKG.tar.xz" >"$SRC_TAR.tmp"
			mv "$SRC_TAR.tmp" "$SRC_TAR"
		fi
	fi
	SRC_SUM=$(sha256sum "$SRC_TAR" | cut -c1-16)
	SRC=$CACHE/linux-src-$SRC_SUM
	if [[ ! -f $SRC/Makefile ]]; then
		log "extracting $SRC_TAR"
		rm -rf "$SRC.tmp"
		mkdir -p "$SRC.tmp"
		tar -xJf "$SRC_TAR" -C "$SRC.tmp" --strip-components=1
		rm -rf "$SRC"
		mv "$SRC.tmp" "$SRC"
	fi

	# ---------------------------------------------------------------- kernel ----
	KEY="src=$SRC_SUM fragment=$(sha256sum "$FRAGMENT" | cut -d' ' -f1)"
	BUILD=$CACHE/linux-build-minimal
	if [[ -f $OUT/vmlinux-minimal && "$(cat "$OUT/.kernel-minimal.key" 2>/dev/null)" == "$KEY" ]]; then
		log "vmlinux-minimal is up to date"
	else
		mkdir -p "$BUILD"
		CFGKEY="src=$SRC_SUM fragment=$(sha256sum "$FRAGMENT" | cut -d' ' -f1)"
		if [[ -f $BUILD/.config && "$(cat "$BUILD/.skiff-config.key" 2>/dev/null)" == "$CFGKEY" ]]; then
			log "configuration unchanged"
		else
		log "configuring: tinyconfig + $(basename "$FRAGMENT")"
		make -s -C "$SRC" O="$BUILD" tinyconfig >/dev/null
		"$SRC/scripts/kconfig/merge_config.sh" -m -O "$BUILD" "$BUILD/.config" "$FRAGMENT" >/dev/null
		make -s -C "$SRC" O="$BUILD" olddefconfig >/dev/null
		# Every option the fragment sets must have survived olddefconfig (a
		# missing dependency silently drops it otherwise), and every option it
		# turns off must be off.
		missing=()
		while IFS= read -r line; do
			if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
				grep -qxF "$line" "$BUILD/.config" || missing+=("$line (have: $(grep -E "^(# )?${BASH_REMATCH[1]}[= ]" "$BUILD/.config" || echo unset))")
			elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
				! grep -q "^${BASH_REMATCH[1]}=" "$BUILD/.config" || missing+=("$line (but it is set)")
			fi
		done <"$FRAGMENT"
		((${#missing[@]} == 0)) || die "options of $(basename "$FRAGMENT") not in the merged config: ${missing[*]}"
		echo "$CFGKEY" >"$BUILD/.skiff-config.key"
		fi
		log "building vmlinux with make -j$JOBS (about 10 min on 2 cores)"
		start=$(date +%s)
		make -s -C "$SRC" O="$BUILD" -j"$JOBS" KBUILD_BUILD_USER=skiff KBUILD_BUILD_HOST=skiff vmlinux
		log "built in $(($(date +%s) - start)) s"
		cp "$BUILD/vmlinux" "$OUT/vmlinux-minimal.tmp"
		strip --strip-debug "$OUT/vmlinux-minimal.tmp" 2>/dev/null || true
		mv "$OUT/vmlinux-minimal.tmp" "$OUT/vmlinux-minimal"
		cp "$BUILD/.config" "$OUT/kernel-minimal.config"
		echo "$KEY" >"$OUT/.kernel-minimal.key"
	fi

}

[[ -n $INITRAMFS_ONLY ]] || build_kernel

# ------------------------------------------------------------- initramfs ----
# guest/build.sh's initramfs minus /lib/modules: the agent loads nothing
# when modules.order is absent. Everything else (the agent, whatever else
# build.sh puts there) is kept as is.
BASE=$OUT/initramfs.img
[[ -f $BASE ]] || die "$BASE is missing: run make guest first"
# Whatever compression build.sh used; "none" is a plain cpio.
decomp=(cat) recomp=(cat) COMPRESSION=none
case $(head -c6 "$BASE" | od -An -tx1 | tr -d ' \n') in
1f8b*) COMPRESSION=gzip decomp=(gzip -dc) recomp=(gzip -n -9) ;;
fd377a585a00) COMPRESSION=xz decomp=(xz -dc) recomp=(xz -C crc32 -9) ;;
28b52ffd*) COMPRESSION=zstd decomp=(zstd -dc) recomp=(zstd -q -19) ;;
02214c18*) COMPRESSION=lz4 decomp=(lz4 -dc) recomp=(lz4 -l -9 -q) ;;
esac
IKEY="base=$(sha256sum "$BASE" | cut -d' ' -f1) script=$(sha256sum "$SCRIPT" | cut -d' ' -f1)"
if [[ -f $OUT/initramfs-minimal.img && "$(cat "$OUT/.initramfs-minimal.key" 2>/dev/null)" == "$IKEY" ]]; then
	log "initramfs-minimal.img is up to date"
else
	STAGE=$(mktemp -d "$CACHE/initramfs-minimal.XXXXXX")
	trap 'rm -rf "$STAGE"' EXIT
	# -m keeps build.sh's fixed mtimes; device nodes survive as root.
	(cd "$STAGE" && "${decomp[@]}" <"$BASE" | cpio -idm --quiet --no-absolute-filenames)
	rm -rf "$STAGE/lib/modules"/*
	(cd "$STAGE" && find . -mindepth 1 | LC_ALL=C sort |
		cpio -o -H newc --quiet --owner 0:0 --reproducible) | "${recomp[@]}" >"$OUT/initramfs-minimal.img.tmp"
	mv "$OUT/initramfs-minimal.img.tmp" "$OUT/initramfs-minimal.img"
	echo "$IKEY" >"$OUT/.initramfs-minimal.key"
	log "initramfs-minimal.img: $(stat -c %s "$OUT/initramfs-minimal.img") bytes (initramfs.img: $(stat -c %s "$BASE"))"
fi

# kernel-minimal.json: guest.json's fields for this pair (skiff check and
# skiff env read it beside vmlinux-minimal).
if [[ -z $INITRAMFS_ONLY ]]; then
	kver=$(cat "$CACHE/linux-build-minimal/include/config/kernel.release" 2>/dev/null || echo unknown)
	srcver=$(basename "$SRC_TAR" .tar.xz)
	srcver=${srcver#${PKG}_}
	srcver=${srcver%_all}
	[[ $SRC_TAR != /usr/src/* ]] || srcver=$(dpkg-query -W -f '${Version}' "$PKG" 2>/dev/null || echo unknown)
	printf '%s %s\n' "$srcver" "$kver" >"$OUT/.kernel-minimal.src"
fi
read -r srcver kver <"$OUT/.kernel-minimal.src" 2>/dev/null || { srcver=unknown kver=unknown; }
agent_sha=$("${decomp[@]}" <"$OUT/initramfs-minimal.img" | cpio -i --quiet --to-stdout init | sha256sum | cut -d' ' -f1)
cat >"$OUT/kernel-minimal.json.tmp" <<EOF
{
  "kernelPackage": "$PKG",
  "kernelPackageVersion": "$srcver",
  "kernelVersion": "$kver",
  "kernelConfig": "tinyconfig + guest/kernel.config $(sha256sum "$FRAGMENT" | cut -c1-12)",
  "agentSHA256": "$agent_sha",
  "initramfsCompression": "$COMPRESSION",
  "machine": "microvm"
}
EOF
mv "$OUT/kernel-minimal.json.tmp" "$OUT/kernel-minimal.json"
log "done: $OUT/vmlinux-minimal, $OUT/initramfs-minimal.img"
