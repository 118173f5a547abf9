#!/bin/bash
# OCI conformance: runs the runtime-tools v0.9.0 validation programs
# (validation/<name>, runtimetest inside the container) against runc and
# skiff on this host, one program at a time.
#
#   scripts/conformance.sh [program ...]   a markdown table, runc next to skiff
#                                          (default: every program not skipped)
#   scripts/conformance.sh --floor         skiff alone on the programs in
#                                          conformance/floor.txt; exits 1 naming
#                                          each one that fails (twice: a failure
#                                          is retried once, and said so)
#
# Env: RUNC (default /usr/sbin/runc), SKIFF (default bin/skiff),
#      RUNTIMES ("runc skiff"; the floor runs skiff only), PROG_TIMEOUT
#      (seconds per program, 120; SLOW below), WORK (build/conformance), FLOOR
#      (conformance/floor.txt).
# The suite lives in conformance/ (its own go.mod: runtime-tools needs
# runtime-spec v1.0.2, the main module uses v1.3.0); its modules come from
# the Go module proxy, the rootfs from busybox-static (scripts/install-deps.sh
# installs both, and runc). Needs root.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
RUNC=${RUNC:-/usr/sbin/runc}
SKIFF=${SKIFF:-$REPO/bin/skiff}
RUNTIMES=${RUNTIMES:-runc skiff}
PROG_TIMEOUT=${PROG_TIMEOUT:-120}
WORK=${WORK:-$REPO/build/conformance}
FLOOR=${FLOOR:-$REPO/conformance/floor.txt}
RT=github.com/opencontainers/runtime-tools

# Programs that cannot mean anything when the container is a VM, with why.
declare -A SKIP=(
	[linux_ns_path]="joins host namespaces (pid, ipc, uts, mount, user, cgroup) by path: a VM's kernel cannot share the host's"
	[linux_ns_path_type]="joins a host namespace by path and checks its type: same as linux_ns_path"
	[linux_ns_itype]="joins the namespaces of a host process by /proc/<pid>/ns path: same as linux_ns_path"
)

# Programs skiff refuses by design for now: they run (runc's result is
# in the table), and the table says why skiff fails them.
declare -A REFUSED=(
	[linux_ns_nopath]="asks for a new user namespace (with uid/gid mappings): skiff refuses user namespaces until it maps IDs on its shares; a container must not run with its IDs silently unmapped"
	[linux_uid_mappings]="uid/gid mappings: same as linux_ns_nopath"
)

# Programs that take longer than PROG_TIMEOUT on a loaded TCG host, with
# their own timeout (seconds): linux_cgroups_cpus creates 17 VMs.
declare -A SLOW=(
	[linux_cgroups_cpus]=300
)

floor=false
if [ "${1:-}" = --floor ]; then
	floor=true
	shift
	RUNTIMES=skiff
	# One program a line; # starts a comment.
	mapfile -t progs < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$FLOOR") || exit 1
	if [ ${#progs[@]} -eq 0 ]; then
		echo "conformance floor: no program in $FLOOR" >&2
		exit 1
	fi
fi
for rt in $RUNTIMES; do
	bin=SKIFF
	[ "$rt" = runc ] && bin=RUNC
	if [ ! -x "${!bin}" ]; then
		echo "conformance: $rt not found at ${!bin} (set $bin, or run scripts/install-deps.sh / make all)" >&2
		exit 1
	fi
done
if [ ! -x /bin/busybox ]; then
	echo "conformance: /bin/busybox missing: the containers' rootfs is made from it (apt-get install busybox-static, or scripts/install-deps.sh)" >&2
	exit 1
fi

mkdir -p "$WORK/bin" "$WORK/logs" "$WORK/tmp"
cd "$REPO/conformance" || exit 1
export GOFLAGS=-mod=mod

# Build runtimetest (static: it runs in a busybox rootfs) and the programs,
# in one go build (one link each, in parallel).
CGO_ENABLED=0 "$GO" build -o "$WORK/runtimetest" $RT/cmd/runtimetest || exit 1
mod=$("$GO" list -m -f '{{.Dir}}' $RT) || exit 1
if ! $floor; then
	if [ $# -gt 0 ]; then
		progs=("$@")
	else
		progs=()
		for d in "$mod"/validation/*/; do
			n=$(basename "$d")
			[ "$n" = util ] || [ -n "${SKIP[$n]:-}" ] || progs+=("$n")
		done
	fi
fi
pkgs=()
for p in "${progs[@]}"; do
	if [ ! -d "$mod/validation/$p" ]; then
		echo "conformance: no program $p in $RT/validation" >&2
		exit 1
	fi
	pkgs+=("$RT/validation/$p")
done
"$GO" build -o "$WORK/bin/" "${pkgs[@]}" || exit 1

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

# cleanup removes what a program left in a runtime's root (one that timed
# out, or failed half-way): the next one must not meet it (several programs
# use the same cgroup path).
cleanup() { # runtime
	local id
	for id in $("$WORK/$1" list -q 2>/dev/null); do
		"$WORK/$1" delete --force "$id" >/dev/null 2>&1
	done
}

# pass: exit 0, at least one "ok", no "not ok" in the TAP.
run() { # runtime program log -> pass/FAIL/TIMEOUT
	local rt=$1 p=$2 log=$3 rc
	(cd "$WORK" && TMPDIR=$WORK/tmp RUNTIME=$WORK/$rt timeout -k 5 "${SLOW[$p]:-$PROG_TIMEOUT}" "$WORK/bin/$p") >"$log" 2>&1
	rc=$?
	cleanup "$rt"
	if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
		echo TIMEOUT
	elif [ $rc -eq 0 ] && grep -q '^ok' "$log" && ! grep -q '^not ok' "$log"; then
		echo pass
	else
		echo FAIL
	fi
}

declare -A RES
start=$(date +%s)
for rt in $RUNTIMES; do cleanup "$rt"; done
for p in "${progs[@]}"; do
	for rt in $RUNTIMES; do
		t0=$(date +%s)
		log=$WORK/logs/$p.$rt.log
		rm -f "$WORK/logs/$p.$rt.try1.log"
		RES[$p.$rt]=$(run "$rt" "$p" "$log")
		if $floor && [ "${RES[$p.$rt]}" != pass ]; then
			# This host is shared and slow (TCG): a program that times out
			# or fails once is given one more try, and the log says so.
			mv "$log" "$WORK/logs/$p.$rt.try1.log"
			echo "$p $rt ${RES[$p.$rt]} $(($(date +%s) - t0))s: retrying once (first log: $WORK/logs/$p.$rt.try1.log)" >&2
			t0=$(date +%s)
			RES[$p.$rt]=$(run "$rt" "$p" "$log")
		fi
		echo "$p $rt ${RES[$p.$rt]} $(($(date +%s) - t0))s" >&2
	done
done

if $floor; then
	failed=()
	for p in "${progs[@]}"; do
		[ "${RES[$p.skiff]}" = pass ] || failed+=("$p")
	done
	took=$(($(date +%s) - start))
	if [ ${#failed[@]} -gt 0 ]; then
		echo "conformance floor: FAILED: ${#failed[@]} of ${#progs[@]} programs on the floor ($FLOOR) failed twice with skiff: ${failed[*]}" >&2
		# The end of each log, for a CI page that keeps no files.
		for p in "${failed[@]}"; do
			echo "--- $p: ${RES[$p.skiff]}, $WORK/logs/$p.skiff.log ends:" >&2
			tail -n 15 "$WORK/logs/$p.skiff.log" | sed 's/^/    /' >&2
		done
		echo "A program on the floor passed before: fix the regression (or, if it can no longer pass for a reason, take it off the floor in the same change and say why)." >&2
		exit 1
	fi
	echo "conformance floor: all ${#progs[@]} programs pass with skiff (${took}s)" >&2
	exit 0
fi

echo
printf '| program |'
for rt in $RUNTIMES; do printf ' %s |' "$rt"; done
printf '\n|---|'
for rt in $RUNTIMES; do printf -- '---|'; done
echo
for p in "${progs[@]}"; do
	printf '| %s |' "$p"
	for rt in $RUNTIMES; do printf ' %s |' "${RES[$p.$rt]}"; done
	echo
done
declare -A total
for rt in $RUNTIMES; do
	total[$rt]=0
	for p in "${progs[@]}"; do
		[ "${RES[$p.$rt]}" = pass ] && total[$rt]=$((${total[$rt]} + 1))
	done
	echo "$rt passes ${total[$rt]} of ${#progs[@]}"
done
refused=()
for p in "${progs[@]}"; do
	[ -n "${REFUSED[$p]:-}" ] && refused+=("$p")
done
if [ ${#refused[@]} -gt 0 ]; then
	echo
	echo "Refused by skiff (by design, for now):"
	for p in "${refused[@]}"; do
		echo "- $p: ${REFUSED[$p]}"
	done
fi
if [ $# -eq 0 ] && [ ${#SKIP[@]} -gt 0 ]; then
	echo
	echo "Skipped (cannot mean anything in a VM):"
	for p in $(printf '%s\n' "${!SKIP[@]}" | sort); do
		echo "- $p: ${SKIP[$p]}"
	done
fi
# A program skiff passes that is not on the floor yet: put it there, so
# that CI keeps it passing.
if [ -n "${RES[${progs[0]}.skiff]:-}" ] && [ -f "$FLOOR" ]; then
	for p in "${progs[@]}"; do
		if [ "${RES[$p.skiff]}" = pass ] && ! grep -qx "$p" <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$FLOOR"); then
			echo "note: skiff passes $p, which is not on the floor ($FLOOR): add it" >&2
		fi
	done
fi
echo
echo "Logs: $WORK/logs/<program>.<runtime>.log"
