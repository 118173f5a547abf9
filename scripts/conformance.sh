#!/bin/bash
# OCI conformance: runs the runtime-tools v0.9.0 validation programs
# (validation/<name>, runtimetest inside the container) against runc and
# skiff on this host, one program at a time, and prints a markdown table.
#
#   scripts/conformance.sh [program ...]     (default: every program not skipped)
#
# Env: RUNC (default /usr/sbin/runc), SKIFF (default bin/skiff),
#      RUNTIMES ("runc skiff"), PROG_TIMEOUT (seconds per program, 60),
#      WORK (build/conformance).
# The suite lives in conformance/ (its own go.mod: runtime-tools needs
# runtime-spec v1.0.2, the main module uses v1.3.0). Needs root.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
RUNC=${RUNC:-/usr/sbin/runc}
SKIFF=${SKIFF:-$REPO/bin/skiff}
RUNTIMES=${RUNTIMES:-runc skiff}
PROG_TIMEOUT=${PROG_TIMEOUT:-60}
WORK=${WORK:-$REPO/build/conformance}
RT=github.com/opencontainers/runtime-tools

# Programs that cannot mean anything when the container is a VM, with why.
declare -A SKIP=(
	[linux_ns_path]="joins host namespaces (pid, ipc, uts, mount, user, cgroup) by path: a VM's kernel cannot share the host's"
	[linux_ns_path_type]="joins a host namespace by path and checks its type: same as linux_ns_path"
	[linux_ns_itype]="joins the namespaces of a host process by /proc/<pid>/ns path: same as linux_ns_path"
)

mkdir -p "$WORK/bin" "$WORK/logs" "$WORK/tmp"
cd "$REPO/conformance" || exit 1
export GOFLAGS=-mod=mod

# Build runtimetest (static: it runs in a busybox rootfs) and the programs.
CGO_ENABLED=0 "$GO" build -o "$WORK/runtimetest" $RT/cmd/runtimetest || exit 1
mod=$("$GO" list -m -f '{{.Dir}}' $RT) || exit 1
if [ $# -gt 0 ]; then
	progs=("$@")
else
	progs=()
	for d in "$mod"/validation/*/; do
		n=$(basename "$d")
		[ "$n" = util ] || progs+=("$n")
	done
fi
for p in "${progs[@]}"; do
	[ -n "${SKIP[$p]:-}" ] && [ $# -eq 0 ] && continue
	"$GO" build -o "$WORK/bin/$p" $RT/validation/"$p" || exit 1
done

# rootfs-amd64.tar.gz from Debian's busybox-static: /bin/busybox, its applet
# symlinks, passwd/group. runtimetest is copied in by the programs.
arch=$("$GO" env GOARCH)
if [ ! -s "$WORK/rootfs-$arch.tar.gz" ] || [ /bin/busybox -nt "$WORK/rootfs-$arch.tar.gz" ]; then
	r=$WORK/rootfs
	rm -rf "$r"
	mkdir -p "$r"/{bin,dev,proc,sys,etc,tmp}
	cp /bin/busybox "$r/bin/busybox"
	for a in $(/bin/busybox --list); do
		[ "$a" = busybox ] || ln -s busybox "$r/bin/$a"
	done
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
	tar -C "$r" -czf "$WORK/rootfs-$arch.tar.gz" . || exit 1
	rm -rf "$r"
fi

# Each runtime through a wrapper with its own state root, so nothing here
# meets containers of other users of the host.
printf '#!/bin/sh\nexec %q --root %q "$@"\n' "$RUNC" "$WORK/runc-root" >"$WORK/runc"
printf '#!/bin/sh\nexec %q --root %q "$@"\n' "$SKIFF" "$WORK/skiff-root" >"$WORK/skiff"
chmod +x "$WORK/runc" "$WORK/skiff"

# pass: exit 0, at least one "ok", no "not ok" in the TAP.
run() { # runtime program -> PASS/FAIL/TIMEOUT
	local rt=$1 p=$2 log=$WORK/logs/$2.$1.log rc
	(cd "$WORK" && TMPDIR=$WORK/tmp RUNTIME=$WORK/$rt timeout -k 5 "$PROG_TIMEOUT" "$WORK/bin/$p") >"$log" 2>&1
	rc=$?
	if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
		echo TIMEOUT
	elif [ $rc -eq 0 ] && grep -q '^ok' "$log" && ! grep -q '^not ok' "$log"; then
		echo pass
	else
		echo FAIL
	fi
}

declare -A RES
for p in "${progs[@]}"; do
	[ -n "${SKIP[$p]:-}" ] && [ $# -eq 0 ] && continue
	for rt in $RUNTIMES; do
		t0=$(date +%s)
		RES[$p.$rt]=$(run "$rt" "$p")
		echo "$p $rt ${RES[$p.$rt]} $(($(date +%s) - t0))s" >&2
	done
done

echo
printf '| program |'
for rt in $RUNTIMES; do printf ' %s |' "$rt"; done
printf '\n|---|'
for rt in $RUNTIMES; do printf -- '---|'; done
echo
fail=0
for p in "${progs[@]}"; do
	if [ -n "${SKIP[$p]:-}" ] && [ $# -eq 0 ]; then
		continue
	fi
	printf '| %s |' "$p"
	for rt in $RUNTIMES; do printf ' %s |' "${RES[$p.$rt]}"; done
	echo
done
if [ $# -eq 0 ] && [ ${#SKIP[@]} -gt 0 ]; then
	echo
	echo "Skipped (cannot mean anything in a VM):"
	for p in $(printf '%s\n' "${!SKIP[@]}" | sort); do
		echo "- $p: ${SKIP[$p]}"
	done
fi
echo
echo "Logs: $WORK/logs/<program>.<runtime>.log"
