#!/usr/bin/env bash
# Pods through Kubernetes' CRI, skiff against runc, in one run of the CRI
# suite's private containerd (tests/cri, TestBench): time from
# RunPodSandbox to two containers running, StopPodSandbox +
# RemovePodSandbox, host Pss per idle pod (1 pod alone and 10 running),
# 10 pods started at once. Prints a markdown table on stdout; progress and
# the test's log go to stderr.
#
#   make bench                        (builds, then runs this after the others)
#   BENCH_RUNS=5 scripts/bench-pods.sh  (as root, after make all)
#
# BENCH_RUNS: sequential pods per runtime, interleaved (default 5; medians).
# BENCH_DEBUG=1 (default): skiff runs with --debug and the table ends with
# the timeline of its sandbox log, which says where skiff's pod start goes.
#
# containerd runs skiff through a one-line sh wrapper that adds --config: a
# configuration of defaults but for [factory] dir, a directory of this run
# (destroyed at its end). The VM templates under the shared default
# (/run/skiff-factory) may be destroyed by anyone's `skiff factory destroy`
# or tests in the middle of a run; then every pod boots cold at once.
# Needs containerd, runc and the CNI plugins (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
REPO=$PWD
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
N=${BENCH_RUNS:-5}
DEBUG=${BENCH_DEBUG:-1}
[[ $N =~ ^[0-9]+$ ]] && ((N >= 1)) || { echo "bench-pods: BENCH_RUNS must be a positive number (got '$N')" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "bench-pods: must run as root" >&2; exit 2; }
[[ -x $REPO/bin/skiff ]] || { echo "bench-pods: $REPO/bin/skiff missing (run make all)" >&2; exit 2; }

# On tmpfs: the templates' RAM files live there.
WORK=$(mktemp -d /run/skiff-bench-pods.XXXXXX)
cleanup() {
	set +e
	"$REPO/bin/skiff" --config "$WORK/config.toml" factory destroy >/dev/null 2>&1
	rm -rf "$WORK"
}
trap cleanup EXIT
printf '[factory]\ndir = "%s"\n' "$WORK/factory" >"$WORK/config.toml"
FLAGS=(--config "$WORK/config.toml")
export SKIFF_CRI_BENCH=$WORK/table.md SKIFF_CRI_BENCH_RUNS=$N
if [[ $DEBUG == 1 ]]; then
	FLAGS+=(--debug)
	export SKIFF_CRI_BENCH_LOGS=$WORK/logs
fi
printf '#!/bin/sh\nexec %q %s "$@"\n' "$REPO/bin/skiff" "${FLAGS[*]@Q}" >"$WORK/skiff"
chmod +x "$WORK/skiff"
export SKIFF_BIN=$WORK/skiff

echo "bench-pods: $N sequential pods per runtime, then 10 at once each (a few minutes)..." >&2
rc=0
"$GO" test -count=1 -run '^TestBench$' -v -timeout 15m ./tests/cri/ >"$WORK/test.log" 2>&1 || rc=$?
grep -E '^ +bench_test.go:[0-9]+: (skiff|runc)' "$WORK/test.log" >&2 || true
if [[ -s $SKIFF_CRI_BENCH ]]; then
	cat "$SKIFF_CRI_BENCH"
	printf '\n(skiff ran as `%s`, through a sh wrapper.)\n' "bin/skiff ${FLAGS[*]/#$WORK/\$WORK}"
fi
if ((rc != 0)); then
	echo "bench-pods: FAIL (go test exit $rc); its log:" >&2
	tail -60 "$WORK/test.log" >&2
fi
exit "$rc"
