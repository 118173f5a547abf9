#!/usr/bin/env bash
# Small files on the guest-local scratch disk against the guest's tmpfs
# (the emulation floor) and a directory of the rootfs (shared over 9p):
# 2000 files written (busybox sh's echo: no fork per file) and listed
# with ls -l (a stat each), in one container, each place measured three
# times, medians; the clock is the guest's. Part of scripts/bench-more.sh;
# runs alone too. Run from the repo root, as root, after `make all`.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SKIFF=${SKIFF:-$REPO/bin/skiff}
FILES=${BENCH_FILES:-2000}
WORK=$(mktemp -d /tmp/skiff-bench-scratch.XXXXXX)
ROOT=$WORK/root
cleanup() {
	set +e
	"$SKIFF" --root "$ROOT" delete --force scratch-bench >/dev/null 2>&1
	rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/b/rootfs/bin" "$ROOT"
cp /bin/busybox "$WORK/b/rootfs/bin/busybox"
chroot "$WORK/b/rootfs" /bin/busybox --install -s /bin
mkdir -p "$WORK/b/rootfs/"{proc,sys,dev,tmp,etc,scratch,tmpfs,rootdir}
(cd "$WORK/b" && "$SKIFF" spec)
# The guest measures itself, no VM start in the figures, with its uptime
# in centiseconds (busybox date has no %N).
script='cs() { read u _ < /proc/uptime; echo ${u%.*}${u#*.}; }
for r in 1 2 3; do for d in /scratch /tmpfs /rootdir; do
mkdir $d/r$r; s=$(cs); i=0
while [ $i -lt '"$FILES"' ]; do echo x > $d/r$r/f$i; i=$((i + 1)); done
ls -l $d/r$r > /dev/null; e=$(cs); echo "$d $(( (e - s) * 10 ))"
done; done'
python3 - "$WORK/b/config.json" "$script" <<'PY'
import json, sys
path, script = sys.argv[1], sys.argv[2]
s = json.load(open(path))
s["process"]["terminal"] = False
s["process"]["args"] = ["/bin/sh", "-c", script]
s["root"]["readonly"] = False
s.setdefault("annotations", {})["io.skiff.scratch"] = "/scratch"
s["mounts"].append({"destination": "/tmpfs", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]})
json.dump(s, open(path, "w"))
PY
out=$("$SKIFF" --root "$ROOT" run --bundle "$WORK/b" scratch-bench)
med() { echo "$out" | awk -v d="$1" '$1 == d {print $2}' | sort -n | sed -n 2p; }
sc=$(med /scratch); tm=$(med /tmpfs); rf=$(med /rootdir)
r() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", a / b}'; }
echo "| $FILES small files written + ls -l (median of 3, guest clock) | scratch $(awk -v m="$sc" 'BEGIN {printf "%.2f", m / 1000}') s ($(r "$sc" "$tm") x tmpfs) | guest tmpfs $(awk -v m="$tm" 'BEGIN {printf "%.2f", m / 1000}') s | rootfs (9p) $(awk -v m="$rf" 'BEGIN {printf "%.2f", m / 1000}') s ($(r "$rf" "$tm") x tmpfs) |"
