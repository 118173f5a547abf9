#!/usr/bin/env bash
# More of `make bench`: podman start-up, stdout and network throughput, and
# density (10 sandboxes at once), skiff against runc where runc applies.
# Medians of N interleaved runs (N=${BENCH_RUNS:-5}); ratios are from this
# one run, since this machine is noisy. Run from the repo root, as root,
# after `make all`.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SKIFF=$REPO/bin/skiff
RUNC=${RUNC:-/usr/sbin/runc}
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
	rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s%N; }
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
secs() { awk -v n="$1" 'BEGIN {printf "%.3f", n / 1e9}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

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

echo "# skiff: more benchmarks ($(nproc) CPUs, median of $N)"
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
: >"$WORK/o-skiff"; : >"$WORK/o-runc"
for i in $(seq "$N"); do
	s=$(now); got=$("$SKIFF" --root "$ROOT" run --bundle "$WORK/b" "out-$i" | wc -c); e=$(now)
	((got == SIZE)) || { echo "skiff relayed $got bytes, want $SIZE" >&2; exit 1; }
	echo $((e - s)) >>"$WORK/o-skiff"
	s=$(now); got=$("$RUNC" --root "$WORK/runc" run --bundle "$WORK/b" "out-runc-$i" | wc -c); e=$(now)
	((got == SIZE)) || { echo "runc relayed $got bytes, want $SIZE" >&2; exit 1; }
	echo $((e - s)) >>"$WORK/o-runc"
done
os=$(median <"$WORK/o-skiff"); or=$(median <"$WORK/o-runc")
mbps() { awk -v n="$1" -v b="$SIZE" 'BEGIN {printf "%.0f", b / 1048576 / (n / 1e9)}'; }
echo "| stdout, 256 MiB (incl. start) | skiff $(mbps "$os") MiB/s | runc $(mbps "$or") MiB/s | skiff/runc $(ratio "$(mbps "$os")" "$(mbps "$or")") |"

# --- network: TCP throughput from the container to a host-side server ---------
ip netns add "$NS"
ip link add "vb$$" type veth peer name vbc
ip link set vbc netns "$NS"
ip addr add 10.231.$(($$ % 250)).1/24 dev "vb$$"; ip link set "vb$$" up
ip -n "$NS" addr add 10.231.$(($$ % 250)).2/24 dev vbc; ip -n "$NS" link set vbc up; ip -n "$NS" link set lo up
NETSIZE=$((64 << 20))
bundle '"/bin/sh", "-c", "head -c '$NETSIZE' /dev/zero | nc 10.231.'$(($$ % 250))'.1 5601"' "/var/run/netns/$NS"
: >"$WORK/n-skiff"; : >"$WORK/n-runc"
for i in $(seq "$N"); do
	for rt in skiff runc; do
		# nc -l quits when its own stdin ends: give it one that does not.
		sleep 600 | busybox nc -l -p 5601 >"$WORK/recv" &
		srv=$!
		sleep 0.2
		s=$(now)
		if [[ $rt == skiff ]]; then "$SKIFF" --root "$ROOT" run --bundle "$WORK/b" "net-$i" >/dev/null
		else "$RUNC" --root "$WORK/runc" run --bundle "$WORK/b" "net-runc-$i" >/dev/null; fi
		# busybox nc -l stays after its peer closed while its own stdin is
		# open: the transfer is over when all the bytes arrived.
		for _ in $(seq 1200); do
			(($(stat -c %s "$WORK/recv") >= NETSIZE)) && break
			sleep 0.1
		done
		e=$(now)
		kill "$srv" 2>/dev/null || true
		pkill -P $$ -f "^sleep 600$" || true
		got=$(stat -c %s "$WORK/recv")
		((got == NETSIZE)) || { echo "$rt: host received $got bytes, want $NETSIZE" >&2; exit 1; }
		echo $((e - s)) >>"$WORK/n-$rt"
	done
done
ns_=$(median <"$WORK/n-skiff"); nr=$(median <"$WORK/n-runc")
nmbps() { awk -v n="$1" -v b="$NETSIZE" 'BEGIN {printf "%.0f", b / 1048576 / (n / 1e9)}'; }
echo "| TCP container->host, 64 MiB (incl. start) | skiff $(nmbps "$ns_") MiB/s | runc $(nmbps "$nr") MiB/s | skiff/runc $(ratio "$(nmbps "$ns_")" "$(nmbps "$nr")") |"

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
		("$SKIFF" --root "$ROOT" --config "$conf" create --bundle "$WORK/b" "d-$mode-$i" </dev/null >/dev/null 2>&1 &&
			"$SKIFF" --root "$ROOT" start "d-$mode-$i") &
	done
	wait
	e=$(now)
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
