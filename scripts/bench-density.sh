#!/usr/bin/env bash
# Density and start under load (issue #16), skiff against gVisor's runsc on
# this machine, in one run:
#   - one idle sandbox alone, then 20 at once (`sleep 600`; skiff from a
#     VM template, runsc with --network=none): host memory per sandbox (Pss of every process that
#     makes it: skiff's shim, guard, QEMU and file servers; runsc's sandbox
#     and gofer processes) and CPU per idle sandbox over IDLE_SECS (60);
#   - 50 `run /bin/true` started at once: how many fail, p50 and p99 of
#     their wall times, against the single-start median (target: p99 <= 10x).
# Run from the repo root, as root, after `make all`. Env: SANDBOXES (20),
# PARALLEL (50), IDLE_SECS (60).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SKIFF=$REPO/bin/skiff
RUNSC=$(command -v runsc || echo /usr/bin/runsc)
SANDBOXES=${SANDBOXES:-20}
PARALLEL=${PARALLEL:-50}
IDLE_SECS=${IDLE_SECS:-60}
[[ $(id -u) -eq 0 ]] || { echo "bench-density: must run as root" >&2; exit 2; }

WORK=$(mktemp -d /tmp/skiff-bench-density.XXXXXX)
ROOT=$WORK/root
RSROOT=$WORK/runsc-root
CONF=$WORK/template.toml
mkdir -p "$ROOT" "$RSROOT"
printf '[factory]\ntemplate = true\ndir = "%s"\n' "$WORK/factory" >"$CONF"

cleanup() {
	set +e
	for d in "$ROOT"/*/; do [[ -d $d ]] && timeout 60 "$SKIFF" --root "$ROOT" delete --force "$(basename "$d")" >/dev/null 2>&1; done
	if [[ -x $RUNSC ]]; then
		for d in $("$RUNSC" --root "$RSROOT" list -q 2>/dev/null); do "$RUNSC" --root "$RSROOT" delete --force "$d" >/dev/null 2>&1; done
	fi
	"$SKIFF" --config "$CONF" factory destroy >/dev/null 2>&1
	rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s%N; }
secs() { awk -v n="$1" 'BEGIN {printf "%.3f", n / 1e9}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
# pct FILE P: the P-th percentile (nearest rank) of the numbers in FILE.
pct() { sort -n "$1" | awk -v p="$2" '{v[NR] = $1} END {i = int((p * NR + 99) / 100); if (i < 1) i = 1; print v[i]}'; }

# A busybox bundle whose args are set per measurement.
bundle() { # dir args-json
	mkdir -p "$1/rootfs/bin"
	cp /bin/busybox "$1/rootfs/bin/busybox"
	chroot "$1/rootfs" /bin/busybox --install -s /bin
	mkdir -p "$1/rootfs/"{proc,sys,dev,tmp,etc}
	(cd "$1" && "$SKIFF" spec)
	python3 - "$1/config.json" "$2" <<'PY'
import json, sys
p, args = sys.argv[1], json.loads(sys.argv[2])
c = json.load(open(p))
c["process"]["args"], c["process"]["terminal"] = args, False
c["root"] = {"path": "rootfs", "readonly": True}
json.dump(c, open(p, "w"))
PY
}
bundle "$WORK/idle" '["/bin/sleep", "600"]'
bundle "$WORK/true" '["/bin/true"]'

# descendants PID...: the PIDs and every descendant of them.
descendants() {
	ps -e -o pid=,ppid= | awk -v roots="$*" '
		BEGIN {n = split(roots, r, " "); for (i = 1; i <= n; i++) want[r[i]] = 1}
		{parent[$1] = $2; pids[NR] = $1}
		END {changed = 1
		     while (changed) {changed = 0
		       for (i in pids) {p = pids[i]; if (!(p in want) && (parent[p] in want)) {want[p] = 1; changed = 1}}}
		     for (p in want) print p}'
}
# pss_kib PID...: their summed Pss in KiB.
pss_kib() {
	local t=0 p v
	for p in "$@"; do
		v=$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
		t=$((t + ${v:-0}))
	done
	echo "$t"
}
# ticks PID...: their summed utime+stime, in clock ticks.
ticks() {
	local t=0 p
	for p in "$@"; do
		t=$((t + $(awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}
HZ=$(getconf CLK_TCK)

# idle_row NAME PIDS...: memory and CPU of idle sandboxes made of PIDS.
idle_row() {
	local name=$1 n=$2; shift 2
	local kib t0 t1 cpu
	sleep 5 # let start-up work settle
	kib=$(pss_kib "$@")
	t0=$(ticks "$@")
	sleep "$IDLE_SECS"
	t1=$(ticks "$@")
	cpu=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v s="$IDLE_SECS" -v n="$n" 'BEGIN {printf "%.2f", 100 * d / hz / s / n}')
	echo "| $name | $n | $((kib / n / 1024)) MiB | $cpu % |"
}

echo "## Density: one idle sandbox alone, then $SANDBOXES at once ($(nproc) CPUs), CPU over ${IDLE_SECS} s"
echo
echo "| runtime | sandboxes | host memory each (Pss of all its processes) | CPU each (% of one core) |"
echo "|---|---:|---:|---:|"
"$SKIFF" --config "$CONF" factory init >/dev/null
# skiff_idle N: N idle skiff sandboxes, measured, then deleted.
skiff_idle() {
	local i shims=() pids
	for i in $(seq "$1"); do
		"$SKIFF" --root "$ROOT" --config "$CONF" run -d --bundle "$WORK/idle" "idle-$i" </dev/null >/dev/null
	done
	for i in $(seq "$1"); do
		shims+=("$("$SKIFF" --root "$ROOT" state "idle-$i" | awk -F'[:,]' '/"pid"/{gsub(/ /, "", $2); print $2}')")
	done
	mapfile -t pids < <(descendants "${shims[@]}")
	idle_row "skiff (template clones)" "$1" "${pids[@]}"
	for i in $(seq "$1"); do "$SKIFF" --root "$ROOT" delete --force "idle-$i" >/dev/null; done
}
# runsc_idle N: the same with runsc.
runsc_idle() {
	local i pids
	for i in $(seq "$1"); do
		"$RUNSC" --root "$RSROOT" --network=none run -detach --bundle "$WORK/idle" "idle-$i" </dev/null >/dev/null 2>&1
	done
	# Every runsc process of this run names its --root.
	mapfile -t pids < <(pgrep -f -- "--root $RSROOT" || pgrep -f -- "--root=$RSROOT")
	idle_row "runsc --network=none" "$1" "${pids[@]}"
	for i in $(seq "$1"); do "$RUNSC" --root "$RSROOT" delete --force "idle-$i" >/dev/null 2>&1 || true; done
}
# One alone, then SANDBOXES at once: a clone alone holds the template's
# pages it touched by itself; many share them.
for n in 1 "$SANDBOXES"; do
	skiff_idle "$n"
	if [[ -x $RUNSC ]]; then
		runsc_idle "$n"
	else
		echo "| runsc | n/a (not installed) | | |"
	fi
done

# --- start under load ---------------------------------------------------------
# starts NAME CMD...: CMD with the ID appended, 5 alone (median), then
# PARALLEL at once; prints the row.
starts() {
	local name=$1; shift
	local i s e
	: >"$WORK/alone" ; : >"$WORK/many"
	for i in $(seq 5); do
		s=$(now); "$@" "alone-$i" </dev/null >/dev/null 2>&1 || echo fail >>"$WORK/fails"; e=$(now)
		echo $((e - s)) >>"$WORK/alone"
	done
	for i in $(seq "$PARALLEL"); do
		(s=$(now); if "$@" "many-$i" </dev/null >"$WORK/many-$i.out" 2>&1; then e=$(now); echo $((e - s)) >>"$WORK/many"; else echo fail >>"$WORK/fails"; fi) &
	done
	wait
	fail=0
	if [[ -f $WORK/fails ]]; then fail=$(wc -l <"$WORK/fails"); rm -f "$WORK/fails"; fi
	local med p50 p99
	med=$(pct "$WORK/alone" 50); p50=$(pct "$WORK/many" 50); p99=$(pct "$WORK/many" 99)
	echo "| $name | $(secs "$med") s | $fail of $PARALLEL | $(secs "$p50") s | $(secs "$p99") s | $(ratio "$p99" "$med") |"
}
echo
echo "## Start under load: $PARALLEL \`run /bin/true\` at once"
echo
echo "| runtime | one alone (median of 5) | failed | p50 | p99 | p99 / alone (target <= 10) |"
echo "|---|---:|---:|---:|---:|---:|"
starts "skiff (template)" "$SKIFF" --root "$ROOT" --config "$CONF" run --bundle "$WORK/true"
if [[ -x $RUNSC ]]; then
	starts "runsc --network=none" "$RUNSC" --root "$RSROOT" --network=none run --bundle "$WORK/true"
fi
left=$(ls "$ROOT")
[[ -z $left ]] || { echo "bench-density: FAIL: skiff state left: $left" >&2; exit 1; }
