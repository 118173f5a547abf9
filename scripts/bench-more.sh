#!/usr/bin/env bash
# More of `make bench`: podman start-up, stdout, stdin and network
# throughput, and density (10 sandboxes at once), skiff against runc where
# runc applies, and against gVisor's runsc (the peer issue #16 measures us
# against) for the throughput rows. Medians of N interleaved runs
# (N=${BENCH_RUNS:-5}); ratios are from this one run, since this machine is
# noisy. Run from the repo root, as root, after `make all`.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SKIFF=$REPO/bin/skiff
RUNC=${RUNC:-/usr/sbin/runc}
# runsc is optional: without it its columns say so and the rest still runs.
RUNSC=${RUNSC:-$(command -v runsc || true)}
# ptrace works on any host (no KVM here, like skiff's TCG); note that it
# runs the container's code natively and traps only its system calls,
# where TCG emulates every instruction.
RUNSC_PLATFORM=${RUNSC_PLATFORM:-ptrace}
N=${BENCH_RUNS:-5}
((N >= 3)) || { echo "BENCH_RUNS must be at least 3" >&2; exit 1; }

WORK=$(mktemp -d /tmp/skiff-bench-more.XXXXXX)
ROOT=$WORK/root
NS=skiffbench$$
# Clean-up removes only what this run made (never other users' containers),
# each step on its own, so one failure cannot keep the rest from running.
cleanup() {
	set +e
	pkill -P $$ 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	ip link del "vb$$" 2>/dev/null
	for d in "$ROOT"/*/; do [[ -d $d ]] && "$SKIFF" --root "$ROOT" delete --force "$(basename "$d")" >/dev/null 2>&1; done
	"$RUNC" --root "$WORK/runc" list -q 2>/dev/null | xargs -r -n1 "$RUNC" --root "$WORK/runc" delete --force >/dev/null 2>&1
	# runsc's sandbox and gofer outlive a killed `runsc run`: delete
	# --force stops them.
	[[ -n $RUNSC ]] && "$RUNSC" --root "$WORK/runsc" list -quiet 2>/dev/null |
		xargs -r -n1 "$RUNSC" --root "$WORK/runsc" delete --force >/dev/null 2>&1
	rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s%N; }
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
secs() { awk -v n="$1" 'BEGIN {printf "%.3f", n / 1e9}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
mibps() { awk -v n="$1" -v b="$2" 'BEGIN {printf "%.1f", b / 1048576 / (n / 1e9)}'; }

# A busybox bundle; args set per measurement.
mkdir -p "$WORK/b/rootfs/bin" "$ROOT"
cp /bin/busybox "$WORK/b/rootfs/bin/busybox"
chroot "$WORK/b/rootfs" /bin/busybox --install -s /bin
mkdir -p "$WORK/b/rootfs/"{proc,sys,dev,tmp,etc}
(cd "$WORK/b" && "$SKIFF" spec)
ORIG=$WORK/b/config.orig.json
mv "$WORK/b/config.json" "$ORIG"
# bundle ARGS-JSON [NETNS]: writes config.json with those args, no
# terminal, and optionally the network namespace path.
bundle() {
	sed -e 's/"terminal": *true/"terminal": false/' \
		-e '/"args": *\[/,/\]/c\		"args": ['"$1"'],' "$ORIG" >"$WORK/b/config.json"
	if [[ -n ${2:-} ]]; then
		sed -i 's#"type": "network"#"type": "network", "path": "'"$2"'"#' "$WORK/b/config.json"
	fi
}

# The throughput rows run each runtime in turn, run after run.
RTS=(skiff runc)
[[ -n $RUNSC ]] && RTS+=(runsc)
# run_rt RT ID [RUNSC-NETWORK]: runs the bundle to its end with runtime RT
# (stdio inherited), each runtime with its own --root; runsc without a
# network unless told. runsc's stderr is kept (for this run only) as the
# reason of a failure.
run_rt() {
	case $1 in
	skiff) "$SKIFF" --root "$ROOT" run --bundle "$WORK/b" "$2" ;;
	runc) "$RUNC" --root "$WORK/runc" run --bundle "$WORK/b" "$2" ;;
	runsc) "$RUNSC" --root "$WORK/runsc" --platform="$RUNSC_PLATFORM" --network="${3:-none}" \
		run --bundle "$WORK/b" "$2" 2>"$WORK/runsc.err" ;;
	esac
}
# failed RT KIND WHAT: a failed run of skiff or runc ends the benchmark, as
# any wrong figure would; one of runsc's is counted and shown in its cell
# instead, so that a peer's flake does not throw away a long run.
failed() {
	echo "$1: $3" >&2
	[[ $1 == runsc ]] || exit 1
	cat "$WORK/runsc.err" >&2
	echo "$3: $(tail -n1 "$WORK/runsc.err")" >>"$WORK/$2-runsc.fail"
}
# cells KIND BYTES [RUNSC-NOTE]: the row's cells after its label, each
# runtime's median MiB/s from $WORK/KIND-RT (nanoseconds a run), then
# skiff's ratio to each peer (same bytes: the inverse ratio of the times).
cells() {
	local rt t out="" ratios="" fails why
	local ts; ts=$(median <"$WORK/$1-skiff")
	for rt in skiff runc runsc; do
		if [[ $rt == runsc && -z $RUNSC ]]; then
			out+=" runsc n/a (not installed) |"; ratios+=" skiff/runsc n/a |"; continue
		fi
		fails=0
		[[ -f $WORK/$1-$rt.fail ]] && fails=$(wc -l <"$WORK/$1-$rt.fail")
		if [[ ! -s $WORK/$1-$rt ]]; then
			why=$(tail -n1 "$WORK/$1-$rt.fail"); why=${why##*: }
			[[ -n $why ]] || why=$(tail -n1 "$WORK/$1-$rt.fail" | sed 's/: $//')
			out+=" $rt n/a (all $N runs failed: $why) |"; ratios+=" skiff/$rt n/a |"; continue
		fi
		t=$(median <"$WORK/$1-$rt")
		out+=" $rt $(mibps "$t" "$2") MiB/s"
		[[ $rt == runsc && -n ${3:-} ]] && out+=" ($3)"
		((fails == 0)) || out+=" ($fails of $N runs failed)"
		out+=" |"
		[[ $rt == skiff ]] || ratios+=" skiff/$rt $(ratio "$t" "$ts") |"
	done
	echo "$out$ratios"
}

echo "# skiff: more benchmarks ($(nproc) CPUs, median of $N)"
[[ -z $RUNSC ]] || echo "# runsc: $("$RUNSC" --version | head -n1), platform $RUNSC_PLATFORM"
echo

# --- podman run --rm true ----------------------------------------------------
# runc cannot raise the hard rlimits podman asks for by default on hosts
# without CAP_SYS_RESOURCE (this one): both runtimes get no default ulimits.
printf '[containers]\ndefault_ulimits = []\n' >"$WORK/containers.conf"
export CONTAINERS_CONF=$WORK/containers.conf
: >"$WORK/p-skiff"; : >"$WORK/p-runc"
podman --runtime "$SKIFF" run --rm --rootfs "$WORK/b/rootfs" /bin/true # warm-up, template
for i in $(seq "$N"); do
	for rt in skiff runc; do
		bin=$SKIFF; [[ $rt == runc ]] && bin=$RUNC
		s=$(now); podman --runtime "$bin" run --rm --rootfs "$WORK/b/rootfs" /bin/true; e=$(now)
		echo $((e - s)) >>"$WORK/p-$rt"
	done
done
ps_=$(median <"$WORK/p-skiff"); pr=$(median <"$WORK/p-runc")
echo "| podman run --rm true | skiff $(secs "$ps_") s | runc $(secs "$pr") s | skiff/runc $(ratio "$ps_" "$pr") |"
unset CONTAINERS_CONF

# --- stdout throughput: cat of 256 MiB to the caller --------------------------
SIZE=$((256 << 20))
bundle '"/bin/head", "-c", "'$SIZE'", "/dev/zero"'
for rt in "${RTS[@]}"; do : >"$WORK/o-$rt"; done
for i in $(seq "$N"); do
	for rt in "${RTS[@]}"; do
		s=$(now)
		if got=$(run_rt "$rt" "out-$rt-$i" | wc -c) && ((got == SIZE)); then
			e=$(now); echo $((e - s)) >>"$WORK/o-$rt"
		else
			failed "$rt" o "relayed ${got:-0} bytes, want $SIZE"
		fi
	done
done
echo "| stdout, 256 MiB (incl. start) |$(cells o "$SIZE")"

# --- stdin throughput: 64 MiB piped into the container's wc -c ----------------
INSIZE=$((64 << 20))
bundle '"/bin/wc", "-c"'
for rt in "${RTS[@]}"; do : >"$WORK/i-$rt"; done
for i in $(seq "$N"); do
	for rt in "${RTS[@]}"; do
		s=$(now)
		# wc counts what reached the container: a short relay shows.
		if got=$(head -c "$INSIZE" /dev/zero | run_rt "$rt" "in-$rt-$i") && ((got == INSIZE)); then
			e=$(now); echo $((e - s)) >>"$WORK/i-$rt"
		else
			failed "$rt" i "counted ${got:-0} bytes, want $INSIZE"
		fi
	done
done
echo "| stdin, 64 MiB (incl. start) |$(cells i "$INSIZE")"

# --- network: TCP throughput from the container to a host-side server ---------
SUB=10.231.$(($$ % 250))
ip netns add "$NS"
ip link add "vb$$" type veth peer name vbc
ip link set vbc netns "$NS"
ip addr add "$SUB.1/24" dev "vb$$"; ip link set "vb$$" up
ip -n "$NS" addr add "$SUB.2/24" dev vbc; ip -n "$NS" link set vbc up; ip -n "$NS" link set lo up
# runsc's own network stack (--network=sandbox, its default) takes the
# namespace's addresses over, and so must give them back after each run.
# The 2022-12 build refuses every namespace on recent kernels (6.11 on;
# this machine runs 6.18): it takes a namespace for the host's when
# /proc/sys/net/core/rmem_default exists, which those kernels show in
# every one (google/gvisor#10704, fixed in later builds). Then
# --network=host: the sandbox still joins the spec's namespace, the same
# veth as skiff and runc, and its sockets are the host kernel's there;
# that is runsc's fastest mode, so the ratio is against runsc at its best.
RUNSC_NET=none; RUNSC_NOTE=""
if [[ -n $RUNSC ]]; then
	bundle '"/bin/true"' "/var/run/netns/$NS"
	if run_rt runsc net-probe sandbox; then
		RUNSC_NET=sandbox
	else
		RUNSC_NET=host
		RUNSC_NOTE="--network=host; sandbox: $(tail -n1 "$WORK/runsc.err" | sed 's/.*: //')"
	fi
	ip -n "$NS" addr replace "$SUB.2/24" dev vbc
fi
NETSIZE=$((64 << 20))
bundle '"/bin/sh", "-c", "head -c '$NETSIZE' /dev/zero | nc '"$SUB"'.1 5601"' "/var/run/netns/$NS"
for rt in "${RTS[@]}"; do : >"$WORK/n-$rt"; done
for i in $(seq "$N"); do
	for rt in "${RTS[@]}"; do
		# nc -l quits when its own stdin ends: give it one that does not.
		sleep 600 | busybox nc -l -p 5601 >"$WORK/recv" &
		srv=$!
		sleep 0.2
		s=$(now)
		ok=1
		run_rt "$rt" "net-$rt-$i" "$RUNSC_NET" >/dev/null || ok=0
		# busybox nc -l stays after its peer closed while its own stdin is
		# open: the transfer is over when all the bytes arrived.
		for _ in $(seq 1200); do
			((ok)) || break
			(($(stat -c %s "$WORK/recv") >= NETSIZE)) && break
			sleep 0.1
		done
		e=$(now)
		kill "$srv" 2>/dev/null || true
		pkill -P $$ -f "^sleep 600$" || true
		[[ $rt == runsc && $RUNSC_NET == sandbox ]] && ip -n "$NS" addr replace "$SUB.2/24" dev vbc
		got=$(stat -c %s "$WORK/recv")
		if ((ok && got == NETSIZE)); then
			echo $((e - s)) >>"$WORK/n-$rt"
		else
			failed "$rt" n "host received $got bytes, want $NETSIZE"
		fi
	done
done
echo "| TCP container->host, 64 MiB (incl. start) |$(cells n "$NETSIZE" "$RUNSC_NOTE")"

# Network set-up cost: run /bin/true in the namespace vs with none.
bundle '"/bin/true"' "/var/run/netns/$NS"; cp "$WORK/b/config.json" "$WORK/net.json"
bundle '"/bin/true"'; cp "$WORK/b/config.json" "$WORK/nonet.json"
: >"$WORK/t-net"; : >"$WORK/t-nonet"
for i in $(seq "$N"); do
	for v in net nonet; do
		cp "$WORK/$v.json" "$WORK/b/config.json"
		s=$(now); "$SKIFF" --root "$ROOT" run --bundle "$WORK/b" "t-$v-$i"; e=$(now)
		echo $((e - s)) >>"$WORK/t-$v"
	done
done
tn=$(median <"$WORK/t-net"); t0=$(median <"$WORK/t-nonet")
echo "| run /bin/true with a network namespace | $(secs "$tn") s | without | $(secs "$t0") s | network adds $(awk -v a="$tn" -v b="$t0" 'BEGIN {printf "%.0f", (a - b) / 1e6}') ms |"

# --- density: 10 sandboxes at once ----------------------------------------------
bundle '"/bin/sleep", "600"'
for mode in template cold; do
	conf=$WORK/$mode.toml
	if [[ $mode == template ]]; then
		printf '[factory]\ntemplate = true\ndir = "%s"\n' "$WORK/factory" >"$conf"
		"$SKIFF" --root "$ROOT" --config "$conf" factory init >/dev/null
	else
		printf '[factory]\ntemplate = false\n' >"$conf"
	fi
	s=$(now)
	for i in $(seq 10); do
		("$SKIFF" --root "$ROOT" --config "$conf" create --bundle "$WORK/b" "d-$mode-$i" </dev/null >/dev/null 2>"$WORK/d-$mode-$i.err" &&
			"$SKIFF" --root "$ROOT" start "d-$mode-$i" 2>>"$WORK/d-$mode-$i.err") &
	done
	wait
	e=$(now)
	# One sandbox of ten can fail to start on a loaded machine: say which
	# and why, which a missing qemu.pid below would not.
	for i in $(seq 10); do
		[[ -s $ROOT/d-$mode-$i/qemu.pid ]] && continue
		echo "d-$mode-$i did not start:" >&2
		cat "$WORK/d-$mode-$i.err" >&2
		exit 1
	done
	sleep 2
	qpss=0; spss=0; srss=0
	for i in $(seq 10); do
		q=$(cat "$ROOT/d-$mode-$i/qemu.pid")
		sh=$("$SKIFF" --root "$ROOT" state "d-$mode-$i" | awk -F'[:,]' '/"pid"/{gsub(/ /, "", $2); print $2}')
		qpss=$((qpss + $(awk '/^Pss:/{print $2}' "/proc/$q/smaps_rollup")))
		spss=$((spss + $(awk '/^Pss:/{print $2}' "/proc/$sh/smaps_rollup")))
		srss=$((srss + $(awk '/^Rss:/{print $2}' "/proc/$sh/smaps_rollup")))
	done
	echo "| 10 sandboxes at once, $mode | $(secs $((e - s))) s to all started | QEMU PSS $((qpss / 10 / 1024)) MiB each | shim PSS $((spss / 10 / 1024)) MiB, RSS $((srss / 10 / 1024)) MiB each |"
	for i in $(seq 10); do "$SKIFF" --root "$ROOT" delete --force "d-$mode-$i" >/dev/null; done
done
