#!/usr/bin/env bash
# Storage benchmark (issue #17): what writing costs in each place a
# container can write, as one markdown table, medians of 3.
#
#   make bench                                  (runs this among the others)
#   scripts/bench-storage.sh                    (as root, after `make all`)
#   BENCH_TREE_FILES=50000 BENCH_SEQ_MIB=1024 scripts/bench-storage.sh
#                                               (the issue's sizes: ~1.5 h under TCG)
#
# Places (rows):
#   runc          a directory of the rootfs on the host: the baseline
#   9p            a directory of skiff's rootfs, shared over virtio-9p
#   virtio-fs     the same over virtio-fs; "n/a (skiff's reason)" where
#                 skiff refuses shared_fs = "virtio-fs"
#   block         a directory of skiff's rootfs when the rootfs is the whole
#                 ext4 filesystem of a block device: an image of the same
#                 rootfs (mkfs.ext4 -d, sparse) loop-mounted on the bundle's
#                 rootfs, as containerd's devmapper snapshotter mounts a
#                 thin device; skiff takes the mount over and gives the
#                 guest the device as a virtio-blk disk (storage.rootfs_disk)
#   scratch       skiff's guest-local scratch disk (io.skiff.scratch)
#   tmpfs         the guest's own tmpfs: the emulation floor
# The shared rootfs rows boot their VM cold ([factory] template = false):
# virtio-fs needs the guest's RAM shared with virtiofsd, which a template
# clone's is not, so 9p is held to the same boot to compare like for like.
# The block row runs in the default configuration, a template clone into
# which skiff hot-plugs the disk once it runs (a block rootfs's usual
# path; a cold boot would put the same disk on QEMU's command line): its
# templates live in a factory directory of the script's own. Each run gets
# a fresh copy of the image (skiff unmounts it from the host and never
# mounts it again; the loop device goes when QEMU exits), made before any
# row wrote to the rootfs. scratch is measured in the 9p VM, the tmpfs in
# each VM.
#
# Work (columns), each a repeat of 3 in one container per configuration
# (one VM: boots are slow under TCG), places interleaved in each repeat so
# a busy host hits them alike:
#   untar         a tar of BENCH_TREE_FILES files (default 2000) in dirs of
#                 100, a few bytes each, generated once on the host with a
#                 fixed layout, extracted from the guest's tmpfs (so every
#                 row reads its source from RAM). Why 2000, not the issue's
#                 50k: under TCG on this 2-core machine, 9p took ~15 ms a
#                 file to extract and ~7 ms to stat, ~65 s per 1000 files
#                 for its 3 repeats (virtio-fs ~25 s): 50k would take
#                 ~1 h 20 min for those two rows alone. With 2000 the whole
#                 script took 6-9 min here, under a load of 3-5; 12 min
#                 with the block rows, under a load of 5-8.
#   find + stat   `find DIR | xargs stat -c %s`: a stat(1) of every entry
#                 with a handful of processes, not one per file as
#                 `find -exec stat` would (a fork under TCG costs as much
#                 as many stats, and the same in every row). `ls -lR` would
#                 do the same lstat calls but also formats and looks up
#                 owners; the short stat format keeps user-space work small.
#   seq write     dd of BENCH_SEQ_MIB MiB (default 128; the issue says
#                 1 GiB, but the guest's tmpfs, half its RAM, must hold the
#                 file: 128 MiB lets the VMs keep skiff's default 512 MiB,
#                 larger sizes give the VMs more) in 1 MiB blocks with
#                 conv=fsync: the write ends when the place says the data is
#                 stored: the host's disk for runc, the shared filesystems
#                 and the block device (cache=writeback: the guest's flush
#                 reaches the image through the loop device), the host's
#                 page cache for scratch (its disk is cache=unsafe: it dies
#                 with its sandbox), RAM for tmpfs.
#   seq read      dd of that file back, after the guest's caches are dropped
#                 (echo 3 > /proc/sys/vm/drop_caches, in the VM only): it
#                 measures carrying the data from the host's page cache,
#                 which still holds it, across each path into the guest; no
#                 row reads the host's disk. runc's read is the host's page
#                 cache itself (the host's caches are not dropped: that
#                 would disturb everything else on this machine).
#   small files   BENCH_FILES (default 2000) files written with busybox
#                 sh's echo (no fork per file) and listed with ls -l
#                 (formerly scripts/bench-scratch.sh, whose figures for
#                 scratch and tmpfs were mostly ls -l's stat of
#                 /etc/localtime over 9p for each file: TZ is set here).
# The find + stat walk also starts with the guest's caches dropped.
# Ratios: a cell's time over the guest tmpfs's time for the same work, in
# the same VM (runc's: over the 9p VM's).
# Below 1 where the host does the work natively: all of runc's, and the
# shared filesystems' bulk reads and writes (the host's file server moves
# the data; the guest's tmpfs copies every page in emulated code).
#
# Clocks: the work is timed inside the container with /proc/uptime
# (centiseconds; busybox date has no %N): the guest's clock, so VM start is
# not in the figures, and the host's in runc. A figure of 0.00 s means less
# than the clock's 10 ms; runc's dd figures are a few ticks, their MiB/s
# only an order of magnitude. The commands run from a busybox copied to the
# tmpfs, so that no row pays for reloading busybox over the shared
# filesystem after the caches are dropped.
#
# Also measured on the host (date +%s%N around `run`, median of 3): the
# start of `run /bin/true` with each skiff configuration (9p cold,
# virtio-fs cold, the default: template restore, and the same with the
# rootfs on a block device: template restore and the disk's hot-plug) and
# runc. The block runs are checked: skiff took the host's mount over (had
# it shared the rootfs instead, the row would measure 9p), the VM came
# from the template (their --debug log says so), no loop device is left.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SKIFF=${SKIFF:-$REPO/bin/skiff}
RUNC=${RUNC:-$(command -v runc || echo /usr/sbin/runc)}
TREE_FILES=${BENCH_TREE_FILES:-2000}
SEQ_MIB=${BENCH_SEQ_MIB:-128}
FILES=${BENCH_FILES:-2000}
RUN_TIMEOUT=${BENCH_RUN_TIMEOUT:-3600}

die() { echo "bench-storage: $*" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || die "must run as root"
# atleast N MIN: N is a number, at least MIN.
atleast() { [[ $1 =~ ^[0-9]+$ ]] && (($1 >= $2)); }
if ! atleast "$TREE_FILES" 100 || ((TREE_FILES % 100)); then
	die "BENCH_TREE_FILES must be a multiple of 100 (dirs of 100 files), got '$TREE_FILES'"
fi
atleast "$SEQ_MIB" 1 || die "BENCH_SEQ_MIB must be a number of MiB, got '$SEQ_MIB'"
atleast "$FILES" 1 || die "BENCH_FILES must be a number, got '$FILES'"
[[ -x $SKIFF ]] || die "$SKIFF missing (make all)"
[[ -x $RUNC ]] || die "runc not found (apt-get install runc)"
[[ -x /bin/busybox ]] || die "/bin/busybox missing (apt-get install busybox-static)"
for c in mkfs.ext4 losetup mountpoint; do
	command -v "$c" >/dev/null || die "$c missing (apt-get install e2fsprogs mount util-linux)"
done

WORK=$(mktemp -d /tmp/skiff-bench-storage.XXXXXX)
ROOT=$WORK/root
RUNC_ROOT=$WORK/runc-root
B=$WORK/b         # the workload bundle (rootfs shared by every row)
T=$WORK/true      # /bin/true on the same rootfs, for the start rows
BLK=$WORK/blk     # the workload on a block device: the image is mounted on its rootfs
BT=$WORK/blk-true # /bin/true on that mount
IMG=$WORK/rootfs.img # the rootfs's ext4 image, as made
RUN_IMG=$WORK/run.img # the copy of it a block run mounts
OUT=$WORK/out
mkdir -p "$ROOT" "$RUNC_ROOT" "$OUT" "$BLK/rootfs" "$BT"

# loops IMAGE: the loop devices attached to IMAGE, one a line.
loops() { losetup -j "$1" | cut -d: -f1; }
# loops_gone IMAGE: waits up to 10 s for IMAGE's loop devices to go
# (autoclear detaches one once QEMU, its last user, has exited).
loops_gone() {
	local i
	for ((i = 0; i < 100; i++)); do
		[[ -z $(loops "$1") ]] && return 0
		sleep 0.1
	done
	return 1
}

# Clean-up removes only what this run made, each step on its own so one
# failure cannot keep the others from running, and says so if a VM or a
# loop device of this run survived.
cleanup() {
	local rc=$? d left img dev
	set +e
	for d in "$ROOT"/*/; do
		[[ -d $d ]] && timeout 120 "$SKIFF" --root "$ROOT" delete --force "$(basename "$d")" >/dev/null 2>&1
	done
	for d in "$RUNC_ROOT"/*/; do
		[[ -d $d ]] && "$RUNC" --root "$RUNC_ROOT" delete --force "$(basename "$d")" >/dev/null 2>&1
	done
	[[ -f $WORK/template.toml ]] &&
		timeout 120 "$SKIFF" --root "$ROOT" --config "$WORK/template.toml" factory destroy >/dev/null 2>&1
	left=$(pgrep -af qemu-system | grep -F -- "$WORK")
	if [[ -n $left ]]; then
		echo "bench-storage: FAIL: qemu processes of this run still running:" >&2
		echo "$left" >&2
		rc=1
	fi
	# The block rootfs: the script's mount where skiff did not take it
	# over (a run that failed first), and the images' loop devices: those
	# still attached once the VMs are gone are detached here.
	if mountpoint -q "$BLK/rootfs"; then
		umount "$BLK/rootfs" || umount -l "$BLK/rootfs"
	fi
	if mountpoint -q "$BLK/rootfs"; then
		echo "bench-storage: FAIL: $BLK/rootfs still mounted; $WORK left" >&2
		exit 1
	fi
	for img in "$IMG" "$RUN_IMG"; do
		[[ -f $img ]] || continue
		if ! loops_gone "$img"; then
			for dev in $(loops "$img"); do losetup -d "$dev"; done
		fi
		if ! loops_gone "$img"; then
			echo "bench-storage: FAIL: loop devices of this run still attached: $(losetup -j "$img")" >&2
			rc=1
		fi
	done
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the rootfs and the tree ---------------------------------------------------
mkdir -p "$B/rootfs/bin" "$T"
cp /bin/busybox "$B/rootfs/bin/busybox"
chroot "$B/rootfs" /bin/busybox --install -s /bin
mkdir -p "$B/rootfs/"{proc,sys,dev,tmp,etc,scratch,tmpfs,rootdir}
# A fixed layout (dNNN/fNN, the path as content), owned by root, with a
# fixed mtime and order, so that every run and every row extracts the same
# bytes; extracting as root chowns each file to its current owner, which
# every runtime allows and which costs the same call an image unpack makes.
tree=$WORK/tree
mkdir "$tree"
for ((d = 0; d < TREE_FILES / 100; d++)); do
	dir=$tree/d$(printf %04d "$d")
	mkdir "$dir"
	for ((f = 0; f < 100; f++)); do echo "d$d/f$f" >"$dir/f$f"; done
done
tar -C "$tree" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$B/rootfs/tree.tar" .
rm -rf "$tree"

# The block rootfs: an ext4 image of the rootfs as it is now, sparse, with
# room for what the workload leaves there (3 trees and 3 × FILES small
# files of a block each, the sequential file, the tar, 64 MiB for the rest
# and the journal: twice that, at least 512 MiB) and an inode for each of
# its files (at least mkfs's default, one per 16 KiB). mkfs.ext4 zeroes the inode tables of an image
# by punching holes, so the guest's ext4 has no lazy init to do behind the
# workload.
img_mib=$((2 * (SEQ_MIB + 3 * (TREE_FILES * 101 / 100 + FILES) * 4 / 1024 + TREE_FILES / 1024 + 64)))
((img_mib >= 512)) || img_mib=512
inodes=$((3 * (TREE_FILES * 101 / 100 + FILES + 2) + 4096))
((inodes >= img_mib * 64)) || inodes=$((img_mib * 64))
truncate -s "${img_mib}M" "$IMG"
mkfs.ext4 -q -N "$inodes" -d "$B/rootfs" "$IMG"

# --- the workload --------------------------------------------------------------
# Run by busybox sh in the container with the places to measure as
# arguments; prints "WORK PLACE CENTISECONDS" lines. DROP=1 drops the
# guest's caches before the reads (in a VM; never in runc: that would drop
# the host's).
# shellcheck disable=SC2016 # expanded by the container's shell
workload='set -e
# Busybox and the tar from the tmpfs: after a cache drop no row reloads them
# over the shared filesystem.
mkdir -p /tmpfs/bin /tmpfs/w
cp /bin/busybox /tmpfs/bin/busybox
/tmpfs/bin/busybox --install -s /tmpfs/bin
export PATH=/tmpfs/bin
cp /tree.tar /tmpfs/tree.tar
cs() { read u _ < /proc/uptime; echo ${u%.*}${u#*.}; }
drop() { if [ "$DROP" = 1 ]; then sync; echo 3 > /proc/sys/vm/drop_caches; fi; }
for r in 1 2 3; do for d in "$@"; do
w=$d/r$r; [ $d != /tmpfs ] || w=/tmpfs/w/r$r
mkdir $w
s=$(cs); tar -xf /tmpfs/tree.tar -C $w; e=$(cs); echo "untar $d $((e - s))"
drop; s=$(cs); find $w | xargs stat -c %s > /dev/null; e=$(cs); echo "stat $d $((e - s))"
s=$(cs); dd if=/dev/zero of=$w/seq bs=1048576 count=$SEQ_MIB conv=fsync 2> /dev/null; e=$(cs); echo "seqw $d $((e - s))"
drop; s=$(cs); dd if=$w/seq of=/dev/null bs=1048576 2> /dev/null; e=$(cs); echo "seqr $d $((e - s))"
rm $w/seq; mkdir $w/small
s=$(cs); i=0
while [ $i -lt $FILES ]; do echo x > $w/small/f$i; i=$((i + 1)); done
ls -l $w/small > /dev/null; e=$(cs); echo "small $d $((e - s))"
# The guest frees its copies (RAM, scratch disk); the host removes the
# shared rootfs copies faster than the guest could, and those on the block
# rootfs go with its image.
[ $d = /rootdir ] || rm -rf $w
done; done'

(cd "$B" && "$SKIFF" spec)
# The workload's spec: the script above; the scratch disk at /scratch; a
# tmpfs at /tmpfs; CAP_SYS_ADMIN and a writable /proc/sys for the cache
# drop. Its /bin/true twins keep the default spec but for the args and
# the rootfs: the directory, or the block device's mount.
python3 - "$B/config.json" "$T/config.json" "$B/rootfs" "$BT/config.json" "$BLK/rootfs" \
	"$workload" "$SEQ_MIB" "$FILES" <<'PY'
import copy, json, sys
path, true_path, rootfs, blk_true_path, blk_rootfs, script, seq, files = sys.argv[1:]
s = json.load(open(path))
s["process"]["terminal"] = False
t = copy.deepcopy(s)
t["process"]["args"] = ["/bin/true"]
t["root"]["path"] = rootfs
json.dump(t, open(true_path, "w"))
t["root"]["path"] = blk_rootfs
json.dump(t, open(blk_true_path, "w"))
s["process"]["args"] = ["/bin/sh", "-c", script, "workload"]
# TZ: without it glibc's localtime() stats /etc/localtime on every call,
# over the shared rootfs in a VM: ls -l of 2000 files took 2.5 s of 9p
# round trips, whichever place it listed, instead of 0.07 s.
s["process"]["env"] += ["SEQ_MIB=" + seq, "FILES=" + files, "TZ=UTC0"]
for k in ("bounding", "effective", "permitted"):
    s["process"]["capabilities"][k].append("CAP_SYS_ADMIN")
s["linux"]["readonlyPaths"] = [p for p in s["linux"]["readonlyPaths"] if p != "/proc/sys"]
s["root"]["readonly"] = False
s.setdefault("annotations", {})["io.skiff.scratch"] = "/scratch"
s["mounts"].append({"destination": "/tmpfs", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]})
json.dump(s, open(path, "w"))
PY
# set_run PLACES DROP: the workload's places and cache drop, appended to
# the args (sh -c's $@) and the environment.
set_run() {
	python3 - "$B/config.json" "$1" "$2" <<'PY'
import json, sys
path, places, drop = sys.argv[1:]
s = json.load(open(path))
s["process"]["args"] = s["process"]["args"][:4] + places.split()
s["process"]["env"] = [e for e in s["process"]["env"] if not e.startswith("DROP=")] + ["DROP=" + drop]
json.dump(s, open(path, "w"))
PY
}

# --- configurations ------------------------------------------------------------
# The guest's tmpfs holds half its RAM: size the cold VMs so that it holds
# the tar, a tree and the sequential file (skiff's default 512 MiB does for
# the default sizes).
need=$((2 * (SEQ_MIB + TREE_FILES * 5 / 1024 + 64)))
mem=$((need > 512 ? need : 512))
cold() { printf '[runtime]\nshared_fs = "%s"\n[factory]\ntemplate = false\n[hypervisor]\ndefault_memory = %d\n' "$1" "$mem"; }
cold 9p >"$WORK/9p.toml"
cold virtio-fs >"$WORK/virtio-fs.toml"
# The default configuration, but with a factory directory of its own: the
# machine's /run/skiff-factory belongs to others. Its memory is skiff's
# default for the default sizes (the block row's tmpfs must hold as much
# as the cold VMs').
printf '[factory]\ntemplate = true\ndir = "%s"\n[hypervisor]\ndefault_memory = %d\n' "$WORK/factory" "$mem" >"$WORK/template.toml"

# skiff_run CONF NAME BUNDLE [FLAG...]: skiff run (with skiff's global
# FLAGs), its stdout to $OUT/NAME, stderr to $OUT/NAME.err. Returns 3 when
# skiff refused the configuration's shared_fs (virtio-fs before skiff
# supports it), and fails the script on any other error.
skiff_run() {
	local conf=$1 name=$2 bundle=$3
	shift 3
	if timeout "$RUN_TIMEOUT" "$SKIFF" --root "$ROOT" --config "$conf" "$@" run --bundle "$bundle" "$name" \
		</dev/null >"$OUT/$name" 2>"$OUT/$name.err"; then
		return 0
	fi
	if grep -q shared_fs "$OUT/$name.err"; then return 3; fi
	echo "bench-storage: skiff run $name failed:" >&2
	cat "$OUT/$name.err" >&2
	exit 1
}
# blk_mount: a fresh copy of the image, loop-mounted on $BLK/rootfs (the
# rootfs of both block bundles).
blk_mount() {
	cp --sparse=always "$IMG" "$RUN_IMG"
	mount -o loop "$RUN_IMG" "$BLK/rootfs"
}
# blk_run NAME BUNDLE: skiff run NAME of BUNDLE on the block rootfs,
# default configuration, with its debug log in $OUT/NAME.log.
blk_run() {
	skiff_run "$WORK/template.toml" "$1" "$2" --debug --log "$OUT/$1.log" || exit 1
}
# blk_done NAME: after the run NAME, checks that it had the disk, from a
# template, and that its loop device went with its VM; removes the copy.
blk_done() {
	if mountpoint -q "$BLK/rootfs"; then
		die "run $1: the block rootfs is still mounted on the host: skiff shared it instead of giving the guest the disk"
	fi
	grep -q 'VM started.* from=template' "$OUT/$1.log" ||
		die "run $1: its VM did not come from the template: $(grep -m1 'VM started' "$OUT/$1.log" || echo "no 'VM started' in its log")"
	loops_gone "$RUN_IMG" || die "run $1: a loop device is still attached after the run: $(losetup -j "$RUN_IMG")"
	rm "$RUN_IMG"
}
declare -A NA # a configuration's refusal, by configuration
na_reason() { sed "s#$WORK/##g" "$OUT/$1.err" | tr '\n|' ' /' | sed 's/ *$//'; }

now() { date +%s%N; }
median() { sort -n | sed -n 2p; }

# --- start of run /bin/true, on the host's clock --------------------------------
echo "bench-storage: start of run /bin/true (3 of each configuration, interleaved)..." >&2
"$SKIFF" --root "$ROOT" --config "$WORK/template.toml" factory init >/dev/null
declare -A START
for r in 1 2 3; do
	for c in 9p virtio-fs template block runc; do
		[[ -z ${NA[$c]:-} ]] || continue
		[[ $c == block ]] && blk_mount
		s=$(now)
		if [[ $c == runc ]]; then
			"$RUNC" --root "$RUNC_ROOT" run --bundle "$T" "true-$c-$r" </dev/null
		elif [[ $c == block ]]; then
			blk_run "true-$c-$r" "$BT"
		else
			rc=0; skiff_run "$WORK/$c.toml" "true-$c-$r" "$T" || rc=$?
			if ((rc == 3)); then NA[$c]=$(na_reason "true-$c-$r"); continue; fi
		fi
		e=$(now)
		[[ $c == block ]] && blk_done "true-$c-$r"
		START[$c]+="$((e - s)) "
	done
done

# --- the workload: one container per configuration ------------------------------
echo "bench-storage: runc..." >&2
set_run /rootdir 0
"$RUNC" --root "$RUNC_ROOT" run --bundle "$B" work-runc </dev/null >"$OUT/runc"
sed 's/ \/rootdir / runc /' "$OUT/runc" >"$OUT/all"
for c in 9p virtio-fs; do
	[[ -z ${NA[$c]:-} ]] || continue
	rm -rf "$B/rootfs/rootdir" && mkdir "$B/rootfs/rootdir"
	# Each VM measures its own tmpfs, the floor its rootfs row is divided
	# by: the same VM at the same time, whatever the host's load did
	# between the two VMs.
	places="/rootdir /tmpfs"
	[[ $c == 9p ]] && places="/rootdir /scratch /tmpfs"
	echo "bench-storage: skiff $c cold ($places)..." >&2
	set_run "$places" 1
	rc=0; skiff_run "$WORK/$c.toml" "work-$c" "$B" || rc=$?
	if ((rc == 3)); then NA[$c]=$(na_reason "work-$c"); continue; fi
	sed -e "s/ \/rootdir / $c /" -e 's/ \/scratch / scratch /' -e "s/ \/tmpfs / tmpfs-$c /" "$OUT/work-$c" >>"$OUT/all"
done
echo "bench-storage: skiff block, template (/rootdir /tmpfs)..." >&2
set_run "/rootdir /tmpfs" 1
cp "$B/config.json" "$BLK/config.json" # its rootfs: the bundle's, the mount
blk_mount
blk_run work-block "$BLK"
blk_done work-block
sed -e 's/ \/rootdir / block /' -e 's/ \/tmpfs / tmpfs-block /' "$OUT/work-block" >>"$OUT/all"

# --- the table ------------------------------------------------------------------
# fig WORK PLACE: the median in centiseconds.
fig() { awk -v w="$1" -v p="$2" '$1 == w && $2 == p {print $3}' "$OUT/all" | median; }
secs() { awk -v c="$1" 'BEGIN {printf "%.2f", c / 100}'; }
# cell WORK PLACE FLOOR: seconds (MiB/s for dd), and × FLOOR's time.
cell() {
	local v t x=""
	v=$(fig "$1" "$2"); t=$(fig "$1" "$3")
	[[ -n $v ]] || { printf 'n/a'; return; }
	[[ -n $t ]] && ((t > 0)) && x=$(awk -v a="$v" -v b="$t" 'BEGIN {r = a / b; printf (r < 0.1 ? " (%.2f×)" : " (%.1f×)"), r}')
	case $1 in
	seqw | seqr)
		if ((v > 0)); then
			printf '%s s, %s MiB/s%s' "$(secs "$v")" "$(awk -v m="$SEQ_MIB" -v c="$v" 'BEGIN {printf "%.0f", m * 100 / c}')" "$x"
		else
			printf '< 0.01 s%s' "$x"
		fi ;;
	*) printf '%s s%s' "$(secs "$v")" "$x" ;;
	esac
}
# row NAME PLACE FLOOR [CONFIG]: NAME's cells, n/a if skiff refused CONFIG.
row() {
	local name=$1 place=$2 floor=$3 c=${4:-} w
	if [[ -n $c && -n ${NA[$c]:-} ]]; then
		echo "| $name | n/a (${NA[$c]}) | | | | |"
		return
	fi
	printf '| %s |' "$name"
	for w in untar stat seqw seqr small; do printf ' %s |' "$(cell "$w" "$place" "$floor")"; done
	echo
}
start_row() {
	local name=$1 c=$2 v
	if [[ -n ${NA[$c]:-} ]]; then
		echo "| $name | n/a (${NA[$c]}) | | | | |"
		return
	fi
	# shellcheck disable=SC2086 # one figure per word
	v=$(printf '%s\n' ${START[$c]} | median)
	echo "| $name | $(awk -v n="$v" 'BEGIN {printf "%.2f", n / 1e9}') s | | | | |"
}

echo
echo "# skiff storage ($(nproc) CPUs, median of 3; times on the guest's clock, runc's on the host's)"
echo
echo "| where the container writes | untar $TREE_FILES files | find + stat of them | seq write $SEQ_MIB MiB (fsync) | seq read $SEQ_MIB MiB | $FILES small files written + ls -l |"
echo "|---|---|---|---|---|---|"
row "runc: rootfs directory on the host (baseline)" runc tmpfs-9p
row "skiff: rootfs over 9p (cold boot)" 9p tmpfs-9p 9p
row "skiff: rootfs over virtio-fs (cold boot)" virtio-fs tmpfs-virtio-fs virtio-fs
row "skiff: rootfs on a block device (loop-mounted ext4 image as virtio-blk; default config: template clone, disk hot-plugged)" block tmpfs-block
row "skiff: guest-local scratch disk (in the 9p VM)" scratch tmpfs-9p 9p
row "skiff: guest tmpfs, the floor (in the 9p VM)" tmpfs-9p tmpfs-9p 9p
row "skiff: guest tmpfs, the floor (in the virtio-fs VM)" tmpfs-virtio-fs tmpfs-virtio-fs virtio-fs
row "skiff: guest tmpfs, the floor (in the block-rootfs VM)" tmpfs-block tmpfs-block
start_row "run /bin/true start (median of 3): skiff 9p, cold boot" 9p
start_row "run /bin/true start (median of 3): skiff virtio-fs, cold boot" virtio-fs
start_row "run /bin/true start (median of 3): skiff default config (template restore)" template
start_row "run /bin/true start (median of 3): skiff rootfs on a block device, default config (template restore, disk hot-plugged)" block
start_row "run /bin/true start (median of 3): runc" runc
echo
echo "(×: the time over the guest tmpfs's for the same work, in the same VM; runc's over the 9p VM's. Start rows: host clock, date +%s%N around run.)"
