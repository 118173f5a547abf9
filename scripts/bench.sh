#!/usr/bin/env bash
# Start-up benchmark: `run` of /bin/true under skiff, against the floor (raw
# QEMU booting skiff's own kernel with skiff's own machine options and an
# initramfs whose /init powers off at once) and runc.
#
#   make bench                     (builds what is needed, then runs this)
#   BENCH_RUNS=9 scripts/bench.sh  (as root; N >= 5, default 7)
#   BENCH_BASELINE=/path/to/old/bin/skiff scripts/bench.sh
#                                  (adds that build's template and pool rows,
#                                  interleaved with the others: before/after)
#
# With the minimal kernel built (`make kernel`), the same runs are made with
# it (cold and from a template, against its own floor: raw QEMU on its
# machine, microvm); without it those rows say n/a. The stock kernel rows
# always use the stock kernel, whatever skiff's default. The pool rows take
# the sandbox from a pool of one ([factory] cache = 1), filled (untimed)
# right before the run and emptied after it, so that its waiting VM takes
# no CPU from the other rows.
#
# Runs are interleaved (run 1 of each, run 2 of each, ...) so that a busy
# host hits every contender alike; the table reports medians. Wall time is
# measured from exec to exit with `date +%s%N`.
#
# The floor's QEMU command line is not written down here: it is derived
# from a real skiff VM (create, read /proc/<qemu pid>/cmdline, delete), so
# that it follows whatever skiff passes. Kept: -machine -cpu -m -smp -kernel
# -append and the -nographic/-nodefaults/-no-user-config/-no-reboot flags;
# -initrd is swapped for the floor image; everything else (agent channel,
# 9p shares, QMP, pidfile, console chardev) is dropped and listed.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
REPO=$PWD

N=${BENCH_RUNS:-7}
[[ $N =~ ^[0-9]+$ ]] && ((N >= 5)) || { echo "bench: BENCH_RUNS must be a number >= 5 (got '$N')" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "bench: must run as root" >&2; exit 2; }

SKIFF=$REPO/bin/skiff
BASELINE=${BENCH_BASELINE:-}
[[ -z $BASELINE || -x $BASELINE ]] || { echo "bench: BENCH_BASELINE=$BASELINE is not an executable" >&2; exit 2; }
FLOOR_INITRD=$REPO/build/floor-initramfs.img
for f in "$SKIFF" "$REPO/build/guest/vmlinux" "$REPO/build/guest/initramfs.img" "$FLOOR_INITRD"; do
	[[ -e $f ]] || { echo "bench: $f missing (run 'make bench', which builds it)" >&2; exit 2; }
done
[[ -x /bin/busybox ]] || { echo "bench: /bin/busybox missing (apt-get install busybox-static)" >&2; exit 2; }
RUNC=/usr/sbin/runc
RUNSC=$(command -v runsc || echo /usr/bin/runsc)
RUN_TIMEOUT=120

WORK=$(mktemp -d /tmp/skiff-bench.XXXXXX)
ROOT=$WORK/root            # skiff --root
RUNC_ROOT=$WORK/runc-root  # runc --root
RUNSC_ROOT=$WORK/runsc-root # runsc --root
BUNDLE=$WORK/bundle        # /bin/true, shared by skiff and runc
IDLE=$WORK/idle            # same rootfs, `sleep 30`: floor derivation + RSS
LOGS=$WORK/logs
mkdir -p "$ROOT" "$RUNC_ROOT" "$RUNSC_ROOT" "$LOGS"

cleanup() {
	local rc=$? d left
	set +e
	if [[ -d $ROOT ]]; then
		for d in "$ROOT"/*/; do
			[[ -d $d ]] || continue
			timeout 60 "$SKIFF" --root "$ROOT" delete --force "$(basename "$d")" >/dev/null 2>&1
		done
	fi
	for r in "$RUNC:$RUNC_ROOT" "$RUNSC:$RUNSC_ROOT"; do
		[[ -x ${r%%:*} && -d ${r#*:} ]] || continue
		for d in "${r#*:}"/*/; do
			[[ -d $d ]] || continue
			"${r%%:*}" --root "${r#*:}" delete --force "$(basename "$d")" >/dev/null 2>&1
		done
	done
	# Pooled VMs wait until told to stop.
	for conf in "${POOL_CONFS[@]}"; do
		timeout 120 "$SKIFF" --root "$ROOT" --config "$conf" factory destroy >/dev/null 2>&1
	done
	# Any state directory left behind means delete failed to clean up.
	if [[ -d $ROOT ]] && compgen -G "$ROOT/*/" >/dev/null; then
		echo "bench: FAIL: skiff state left in $ROOT: $(ls "$ROOT")" >&2
		rc=1
	fi
	left=$(pgrep -af qemu-system | grep -F -- "$WORK" || true)
	if [[ -n $left ]]; then
		echo "bench: FAIL: qemu processes of this benchmark still running:" >&2
		echo "$left" >&2
		rc=1
	fi
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s%N; }

# --- bundles -----------------------------------------------------------------
mkdir -p "$BUNDLE/rootfs/bin"
(cd "$BUNDLE/rootfs" && mkdir -p dev proc sys tmp etc root && chmod 1777 tmp)
cp /bin/busybox "$BUNDLE/rootfs/bin/busybox"
chroot "$BUNDLE/rootfs" /bin/busybox --install -s /bin
(cd "$BUNDLE" && "$SKIFF" spec)
# set_args CONFIG JSON-ARGS: terminal off, process.args replaced (one-line or
# multi-line "args" array, as `skiff spec` writes it).
set_args() {
	sed -i -e 's/"terminal": *true/"terminal": false/' \
		-e "/\"args\": *\[.*\]/{s#\"args\": *\[.*\]#\"args\": [$2],#;b" -e '}' \
		-e "/\"args\": *\[/,/\]/c\\		\"args\": [$2]," "$1"
	grep -q '"terminal": false' "$1" && grep -qF "\"args\": [$2]" "$1" ||
		{ echo "bench: could not edit $1" >&2; exit 1; }
}
cp "$BUNDLE/config.json" "$WORK/config.orig.json"
set_args "$BUNDLE/config.json" '"/bin/true"'
mkdir -p "$IDLE"
sed -e "s#\"path\": *\"rootfs\"#\"path\": \"$BUNDLE/rootfs\"#" "$WORK/config.orig.json" >"$IDLE/config.json"
grep -qF "\"path\": \"$BUNDLE/rootfs\"" "$IDLE/config.json" || { echo "bench: could not set root.path in $IDLE/config.json" >&2; exit 1; }
set_args "$IDLE/config.json" '"/bin/sleep", "30"'

# Two skiff configurations: sandboxes restored from a VM template (the
# default), and cold boots. The template lives in the bench's own factory
# directory; the warm-up run builds it.
COLD_CONF=$WORK/cold.toml
TPL_CONF=$WORK/template.toml
# ... and sandboxes taken from a pool of one ([factory] cache = 1), which
# shares the template's factory directory.
POOL_CONF=$WORK/pool.toml
POOL_CONFS=()
STOCK="[hypervisor]\nkernel = \"$REPO/build/guest/vmlinux\"\ninitrd = \"$REPO/build/guest/initramfs.img\"\n"
printf "$STOCK"'[factory]\ntemplate = false\n' >"$COLD_CONF"
printf "$STOCK"'[factory]\ntemplate = true\ndir = "%s"\n' "$WORK/factory" >"$TPL_CONF"
printf "$STOCK"'[factory]\ntemplate = true\ndir = "%s"\ncache = 1\n' "$WORK/factory" >"$POOL_CONF"
# The baseline build's rows use a factory directory of their own, and the
# stock kernel with the baseline's own initramfs (its agent), beside it:
# BASELINE/../../build/guest, as a bin/skiff of a checkout finds it.
BASE_TPL_CONF=$WORK/base-template.toml BASE_POOL_CONF=$WORK/base-pool.toml
if [[ -n $BASELINE ]]; then
	BASE_GUEST=$(cd "$(dirname "$BASELINE")/.." && pwd)/build/guest
	[[ -f $BASE_GUEST/initramfs.img ]] || { echo "bench: the baseline's guest image $BASE_GUEST/initramfs.img is missing (make guest in its checkout)" >&2; exit 2; }
	BASE_STOCK="[hypervisor]\nkernel = \"$REPO/build/guest/vmlinux\"\ninitrd = \"$BASE_GUEST/initramfs.img\"\n"
	printf "$BASE_STOCK"'[factory]\ntemplate = true\ndir = "%s"\n' "$WORK/base-factory" >"$BASE_TPL_CONF"
	printf "$BASE_STOCK"'[factory]\ntemplate = true\ndir = "%s"\ncache = 1\n' "$WORK/base-factory" >"$BASE_POOL_CONF"
fi
POOL_CONFS+=("$POOL_CONF")
[[ -z $BASELINE ]] || POOL_CONFS+=("$BASE_POOL_CONF")
# The minimal kernel's pair (the machine follows the kernel: microvm).
MIN_KERNEL=$REPO/build/guest/vmlinux-minimal
MIN_INITRD=$REPO/build/guest/initramfs-minimal.img
MIN=0
if [[ -f $MIN_KERNEL && -f $MIN_INITRD ]]; then
	MIN=1
	MIN_COLD_CONF=$WORK/min-cold.toml
	MIN_TPL_CONF=$WORK/min-template.toml
	MINK="[hypervisor]\nkernel = \"$MIN_KERNEL\"\ninitrd = \"$MIN_INITRD\"\n"
	printf "$MINK"'[factory]\ntemplate = false\n' >"$MIN_COLD_CONF"
	printf "$MINK"'[factory]\ntemplate = true\ndir = "%s"\n' "$WORK/factory" >"$MIN_TPL_CONF"
	MIN_POOL_CONF=$WORK/min-pool.toml
	printf "$MINK"'[factory]\ntemplate = true\ndir = "%s"\ncache = 1\n' "$WORK/factory" >"$MIN_POOL_CONF"
	POOL_CONFS+=("$MIN_POOL_CONF")
else
	echo "bench: no minimal kernel in build/guest (make kernel): its rows will say n/a" >&2
fi

# idle CONF NAME: create and start a `sleep 30` container, read its qemu's
# memory after 2 s (Rss, and Pss, which splits pages shared with other
# processes, such as a template's, between them), keep its command line in
# QARGV, delete it. Sets MEM.
idle() {
	local conf=$1 name=$2 qpid
	timeout "$RUN_TIMEOUT" "$SKIFF" --root "$ROOT" --config "$conf" create --bundle "$IDLE" "$name" </dev/null >"$LOGS/idle.out" 2>&1 ||
		{ echo "bench: skiff create failed:" >&2; cat "$LOGS/idle.out" >&2; exit 1; }
	qpid=$(cat "$ROOT/$name/qemu.pid")
	mapfile -d '' QARGV <"/proc/$qpid/cmdline"
	((${#QARGV[@]} > 1)) || { echo "bench: could not read the command line of qemu pid $qpid" >&2; exit 1; }
	MEM="n/a"
	if timeout 60 "$SKIFF" --root "$ROOT" start "$name" >"$LOGS/idle-start.out" 2>&1; then
		sleep 2 # let the guest settle after the process starts
		if [[ -r /proc/$qpid/smaps_rollup ]]; then
			MEM=$(awk '/^Rss:/{r=$2} /^Pss:/{p=$2} END {printf "Rss %d MiB, Pss %d MiB", r/1024, p/1024}' "/proc/$qpid/smaps_rollup")
		fi
	else
		echo "bench: note: skiff start of the idle container failed (memory not measured): $(tail -n 3 "$LOGS/idle-start.out")" >&2
	fi
	timeout 60 "$SKIFF" --root "$ROOT" delete --force "$name" >/dev/null 2>&1 ||
		{ echo "bench: skiff delete --force $name failed" >&2; exit 1; }
}

echo "idle memory of a template clone (builds the template first)..."
idle "$TPL_CONF" bench-idle-tpl
idle "$TPL_CONF" bench-idle-tpl2
MEM_TPL=$MEM
# --- floor command line, from a real cold-booted skiff VM ---------------------
echo "deriving the floor's QEMU command line from a skiff VM (create; read /proc/PID/cmdline; delete)..."
idle "$COLD_CONF" bench-idle-cold
MEM_COLD=$MEM

FLOOR_CON=$LOGS/floor-console.log
# derive_floor NAME: the floor command line from QARGV (the last idle VM's)
# into the array NAME.
derive_floor() {
	local -n out=$1
	local a i=1
	out=("${QARGV[0]}")
	dropped=()
	while ((i < ${#QARGV[@]})); do
		a=${QARGV[i]}
		case $a in
		-machine)
			# Without skiff's RAM backend (a memfd for virtio-fs,
			# whose -object is dropped): the floor is QEMU's own RAM.
			out+=("$a" "${QARGV[i + 1]//,memory-backend=mem/}"); i=$((i + 2)) ;;
		-cpu | -m | -smp | -kernel | -append)
			out+=("$a" "${QARGV[i + 1]}"); i=$((i + 2)) ;;
		-initrd)
			out+=(-initrd "$FLOOR_INITRD"); i=$((i + 2)) ;;
		-nographic | -nodefaults | -no-user-config | -no-reboot)
			out+=("$a"); i=$((i + 1)) ;;
		-*)
			# an option with a value unless the next word is itself an option
			if ((i + 1 < ${#QARGV[@]})) && [[ ${QARGV[i + 1]} != -* ]]; then
				dropped+=("$a ${QARGV[i + 1]}"); i=$((i + 2))
			else
				dropped+=("$a"); i=$((i + 1))
			fi ;;
		*)
			dropped+=("$a"); i=$((i + 1)) ;;
		esac
	done
	out+=(-serial "file:$FLOOR_CON")
	[[ " ${out[*]} " == *" -initrd $FLOOR_INITRD "* ]] || { echo "bench: skiff's QEMU command line has no -initrd" >&2; exit 1; }
	echo "floor ($1): $(printf '%q ' "${out[@]}")"
	echo "  (dropped from skiff's: $(printf '%s; ' "${dropped[@]}" | sed 's/; $//' | sed "s#$WORK#\$BENCH#g"))"
}
derive_floor FLOOR

MEM_MIN_TPL="n/a" MEM_MIN_COLD="n/a"
if ((MIN)); then
	echo "the same with the minimal kernel (template first)..."
	idle "$MIN_TPL_CONF" bench-idle-mtpl
	idle "$MIN_TPL_CONF" bench-idle-mtpl2
	MEM_MIN_TPL=$MEM
	idle "$MIN_COLD_CONF" bench-idle-mcold
	MEM_MIN_COLD=$MEM
	derive_floor FLOOR_MIN
	[[ " ${FLOOR_MIN[*]} " == *" -machine microvm"* ]] || echo "bench: note: the minimal kernel's VM is not on microvm" >&2
fi

# pool_ready CONF: wait (not timed) until the pool of CONF has a VM ready
# and no filler at work, as a pool with spare capacity would: the refill
# of the previous run must not be timed with this one.
pool_ready() {
	local i out
	for i in $(seq 600); do
		out=$("$SKIFF" --root "$ROOT" --config "$1" factory status 2>&1) || true
		# "ready" alone is this configuration's; another's says so.
		if grep -qE ' ready +[1-9][0-9]*$' <<<"$out" && ! grep -q ' filling ' <<<"$out" && ! pgrep -f "factory fill" >/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	echo "bench: the pool of $1 never got a ready VM:" >&2; echo "$out" >&2; exit 1
}

# --- one timed run of each ---------------------------------------------------
# Each appends its wall time in ns to $WORK/<name>.ns.
run_skiff() { # i cold|template|pool|mcold|mtemplate|mpool|btemplate|bpool
	local s e rc=0 conf=$TPL_CONF SKIFF=$SKIFF
	[[ $2 == b* ]] && SKIFF=$BASELINE
	[[ $2 == btemplate ]] && conf=$BASE_TPL_CONF
	[[ $2 == bpool ]] && conf=$BASE_POOL_CONF
	[[ $2 == cold ]] && conf=$COLD_CONF
	[[ $2 == mcold ]] && conf=$MIN_COLD_CONF
	[[ $2 == mtemplate ]] && conf=$MIN_TPL_CONF
	[[ $2 == pool ]] && conf=$POOL_CONF
	[[ $2 == mpool ]] && conf=$MIN_POOL_CONF
	# A pool is filled (untimed) just before its run and emptied after it,
	# so that no waiting VM takes CPU from the other rows.
	[[ $2 == *pool ]] && "$SKIFF" --root "$ROOT" --config "$conf" factory init >/dev/null && pool_ready "$conf"
	s=$(now)
	timeout "$RUN_TIMEOUT" "$SKIFF" --root "$ROOT" --config "$conf" run --bundle "$BUNDLE" "bench-$1" </dev/null >"$LOGS/skiff.out" 2>&1 || rc=$?
	e=$(now)
	if ((rc != 0)); then
		echo "bench: skiff run bench-$1 exited $rc:" >&2; tail -n 20 "$LOGS/skiff.out" >&2; exit 1
	fi
	[[ ! -e $ROOT/bench-$1 ]] || { echo "bench: skiff run left its state dir $ROOT/bench-$1" >&2; exit 1; }
	echo $((e - s)) >>"$WORK/skiff-$2.ns"
	if [[ $2 == *pool ]]; then
		"$SKIFF" --root "$ROOT" --config "$conf" factory destroy --pool >/dev/null
	fi
	return 0
}
run_floor() { # [min]
	local s e rc=0 name=floor arr=FLOOR
	if [[ ${1:-} == min ]]; then
		name=floor-min arr=FLOOR_MIN
	fi
	local -n cmd=$arr
	: >"$FLOOR_CON"
	s=$(now)
	timeout "$RUN_TIMEOUT" "${cmd[@]}" </dev/null >"$LOGS/floor.out" 2>&1 || rc=$?
	e=$(now)
	if ((rc != 0)); then
		echo "bench: floor QEMU exited $rc:" >&2; tail -n 20 "$LOGS/floor.out" "$FLOOR_CON" >&2; exit 1
	fi
	grep -qE 'reboot: (Power down|Restarting system)' "$FLOOR_CON" ||
		echo "bench: note: floor guest did not log 'reboot: Power down' (console: $(tail -c 200 "$FLOOR_CON" | tr -d '\r' | tail -n 2))" >&2
	echo $((e - s)) >>"$WORK/$name.ns"
}
# The reference runtimes: runc (no sandbox) and gVisor's runsc (the other
# sandbox that needs no hardware virtualisation; --network=none, as skiff's
# bundle has no network either). A runtime that fails once is reported n/a.
declare -A REF_OK REF_WHY
REF_OK[runc]=0 REF_WHY[runc]="$RUNC not found"
REF_OK[runsc]=0 REF_WHY[runsc]="$RUNSC not found (apt-get install runsc)"
ref_cmd() { # name id -> the run command line
	case $1 in
	runc) echo "$RUNC" --root "$RUNC_ROOT" run --bundle "$BUNDLE" "bench-runc-$2" ;;
	runsc) echo "$RUNSC" --root "$RUNSC_ROOT" --network=none run --bundle "$BUNDLE" "bench-runsc-$2" ;;
	esac
}
run_ref() { # name i
	local s e rc=0 name=$1
	((REF_OK[$name])) || return 0
	s=$(now)
	# shellcheck disable=SC2046
	timeout "$RUN_TIMEOUT" $(ref_cmd "$name" "$2") </dev/null >"$LOGS/$name.out" 2>&1 || rc=$?
	e=$(now)
	if ((rc != 0)); then
		REF_OK[$name]=0
		REF_WHY[$name]="$name run exited $rc: $(tail -n 3 "$LOGS/$name.out" | tr '\n' ' ')"
		return 0
	fi
	echo $((e - s)) >>"$WORK/$name.ns"
}

# Warm-up (not counted): page cache, the accelerator verdict, runc's check.
echo "warm-up..."
run_skiff warm template && run_skiff warm cold && run_floor && run_skiff warm pool
if [[ -n $BASELINE ]]; then
	run_skiff warm btemplate && run_skiff warm bpool
fi
if ((MIN)); then
	run_skiff warm mtemplate && run_skiff warm mcold && run_floor min && run_skiff warm mpool
fi
for ref in runc runsc; do
	bin=$RUNC
	[[ $ref == runsc ]] && bin=$RUNSC
	[[ -x $bin ]] || continue
	REF_OK[$ref]=1
	run_ref "$ref" warm
	((REF_OK[$ref])) || echo "bench: $ref: ${REF_WHY[$ref]}" >&2
done
rm -f "$WORK"/*.ns

echo "timing $N interleaved runs of each..."
for i in $(seq "$N"); do
	run_skiff "$i" template
	run_skiff "$i" cold
	run_floor
	run_skiff "$i" pool
	if [[ -n $BASELINE ]]; then
		run_skiff "$i" btemplate
		run_skiff "$i" bpool
	fi
	if ((MIN)); then
		run_skiff "$i" mtemplate
		run_skiff "$i" mcold
		run_floor min
		run_skiff "$i" mpool
	fi
	run_ref runc "$i"
	run_ref runsc "$i"
	printf '  run %d/%d done\n' "$i" "$N"
done

# --- report ------------------------------------------------------------------
# stats FILE -> "median min max" in seconds
stats() {
	sort -n "$1" | awk '{v[NR] = $1 / 1e9}
		END {m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		     printf "%.3f %.3f %.3f\n", m, v[1], v[NR]}'
}
NOTES=()
read -r f_med f_min f_max < <(stats "$WORK/floor.ns")
read -r s_med s_min s_max < <(stats "$WORK/skiff-template.ns")
read -r c_med c_min c_max < <(stats "$WORK/skiff-cold.ns")
read -r p_med p_min p_max < <(stats "$WORK/skiff-pool.ns")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

echo
echo "## \`run /bin/true\`, median of $N interleaved runs ($(nproc) CPUs, accel from skiff's command line: $(printf '%s\n' "${FLOOR[@]}" | grep -m1 -o 'accel=[a-z]*' || echo '?'))"
echo
echo "| what | median (s) | min | max | ratio to floor |"
echo "|---|---:|---:|---:|---:|"
printf '| skiff run, stock kernel, restored from a VM template | %s | %s | %s | %s |\n' "$s_med" "$s_min" "$s_max" "$(ratio "$s_med" "$f_med")"
printf '| skiff run, stock kernel, cold boot ([factory] template = false) | %s | %s | %s | %s |\n' "$c_med" "$c_min" "$c_max" "$(ratio "$c_med" "$f_med")"
printf '| skiff run, stock kernel, from the pool ([factory] cache = 1) | %s | %s | %s | %s |\n' "$p_med" "$p_min" "$p_max" "$(ratio "$p_med" "$f_med")"
if [[ -n $BASELINE ]]; then
	read -r bt_med bt_min bt_max < <(stats "$WORK/skiff-btemplate.ns")
	read -r bp_med bp_min bp_max < <(stats "$WORK/skiff-bpool.ns")
	printf '| baseline (%s), restored from a VM template | %s | %s | %s | %s (this build: %s of it) |\n' "$BASELINE" "$bt_med" "$bt_min" "$bt_max" "$(ratio "$bt_med" "$f_med")" "$(ratio "$s_med" "$bt_med")"
	printf '| baseline (%s), from the pool | %s | %s | %s | %s (this build: %s of it) |\n' "$BASELINE" "$bp_med" "$bp_min" "$bp_max" "$(ratio "$bp_med" "$f_med")" "$(ratio "$p_med" "$bp_med")"
fi
printf '| floor (raw QEMU, same kernel/machine, poweroff /init) | %s | %s | %s | 1.00 |\n' "$f_med" "$f_min" "$f_max"
if ((MIN)); then
	read -r fm_med fm_min fm_max < <(stats "$WORK/floor-min.ns")
	read -r mc_med mc_min mc_max < <(stats "$WORK/skiff-mcold.ns")
	read -r mt_med mt_min mt_max < <(stats "$WORK/skiff-mtemplate.ns")
	read -r mp_med mp_min mp_max < <(stats "$WORK/skiff-mpool.ns")
	printf '| minimal kernel cold (make kernel, microvm) | %s | %s | %s | %s (to its floor) |\n' "$mc_med" "$mc_min" "$mc_max" "$(ratio "$mc_med" "$fm_med")"
	printf '| minimal kernel, template restore | %s | %s | %s | %s (to its floor), %s (to the stock floor) |\n' "$mt_med" "$mt_min" "$mt_max" "$(ratio "$mt_med" "$fm_med")" "$(ratio "$mt_med" "$f_med")"
	printf '| minimal kernel, from the pool | %s | %s | %s | %s (to its floor), %s (to the stock floor) |\n' "$mp_med" "$mp_min" "$mp_max" "$(ratio "$mp_med" "$fm_med")" "$(ratio "$mp_med" "$f_med")"
	printf '| floor, minimal kernel (raw QEMU, microvm, poweroff /init) | %s | %s | %s | 1.00 |\n' "$fm_med" "$fm_min" "$fm_max"
else
	echo "| minimal kernel cold (make kernel, microvm) | n/a | n/a | n/a | n/a |"
	echo "| minimal kernel, template restore | n/a | n/a | n/a | n/a |"
	echo "| minimal kernel, from the pool | n/a | n/a | n/a | n/a |"
	echo "| floor, minimal kernel (raw QEMU, microvm, poweroff /init) | n/a | n/a | n/a | n/a |"
fi
for ref in runc runsc; do
	if ((REF_OK[$ref])) && [[ -s $WORK/$ref.ns ]]; then
		read -r r_med r_min r_max < <(stats "$WORK/$ref.ns")
		printf '| %s run | %s | %s | %s | %s |\n' "$ref" "$r_med" "$r_min" "$r_max" "$(ratio "$r_med" "$f_med")"
		[[ $ref == runsc ]] && RUNSC_MED=$r_med
	else
		echo "| $ref run | n/a | n/a | n/a | n/a |"
		NOTES+=("$ref: ${REF_WHY[$ref]}")
	fi
done
for n in "${NOTES[@]}"; do echo "$n"; done
if [[ -n ${RUNSC_MED:-} ]]; then
	echo
	echo "skiff/runsc = $(ratio "$s_med" "$RUNSC_MED") from a template, $(ratio "$p_med" "$RUNSC_MED") from the pool, $(ratio "$c_med" "$RUNSC_MED") cold (targets: pool <= 1.0, template <= 2.0)"
fi
echo
echo "skiff/floor = $(ratio "$s_med" "$f_med") with templates, $(ratio "$p_med" "$f_med") from the pool, $(ratio "$c_med" "$f_med") cold (target <= 1.30)"
echo "cold-boot overhead over floor = $(awk -v s="$c_med" -v f="$f_med" 'BEGIN {printf "%.0f", (s - f) * 1000}') ms (median minus median)"
echo "skiff qemu, idle container (sleep 30), 2 s after start: template clone: $MEM_TPL; cold boot: $MEM_COLD"
if ((MIN)); then
	echo "minimal kernel: cold / its floor = $(ratio "$mc_med" "$fm_med") (target <= 1.20); template restore $mt_med s = $(ratio "$mt_med" "$f_med") x the stock floor, pool $mp_med s = $(ratio "$mp_med" "$f_med") x (target <= 0.2, <= 0.3 s)"
	echo "minimal kernel, idle container: template clone: $MEM_MIN_TPL; cold boot: $MEM_MIN_COLD"
fi
