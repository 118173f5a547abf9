#!/usr/bin/env bash
# Measure boot time to /init of the guest image for each initramfs
# compression, under TCG, to choose guest/build.sh's default.
#
#   scripts/measure-initrd-compression.sh [ROUNDS]   (default 5; prints medians)
#
# /init is a stand-in the size of a real agent: a static Go program linking
# net/http and encoding/json that prints CLOCK_MONOTONIC (the guest's time
# since boot) and powers the VM off. The kernel, module set and cpio layout
# are the real ones (guest/build.sh builds each image). Compressions are
# interleaved round by round so that host load hits them alike. Reported per
# compression, medians: "init" = guest time at /init, "wall" = QEMU start to
# exit, "cpu" = QEMU user+sys time (the least sensitive to a busy host).
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
ROUNDS=${1:-5}
COMPRESSIONS=${COMPRESSIONS:-none gzip lz4 zstd}
if command -v go >/dev/null 2>&1; then GO=${GO:-go}; else GO=${GO:-/usr/local/go/bin/go}; fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

mkdir -p "$WORK/standin"
cat >"$WORK/standin/main.go" <<'GO'
package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"syscall"
	"unsafe"
)

func main() {
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 1, uintptr(unsafe.Pointer(&ts)), 0)
	fmt.Printf("\nT_INIT_MS=%d\n", ts.Sec*1000+ts.Nsec/1e6)
	if len(os.Args) > 5 { // never true: keeps net/http and json linked in
		_ = json.NewEncoder(os.Stdout).Encode(http.ListenAndServe(os.Args[1], nil))
	}
	_ = syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}
GO
printf 'module standin\n\ngo 1.21\n' >"$WORK/standin/go.mod"
(cd "$WORK/standin" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false "$GO" build -trimpath -ldflags "-s -w" -o "$WORK/init" .)
echo "stand-in /init: $(stat -c %s "$WORK/init") bytes"

APPEND="console=ttyS0 quiet panic=-1 reboot=t nokaslr no_timer_check tsc=reliable lpj=5000000 8250.nr_uarts=1"
boot() { # DIR -> appends "init_ms wall_ms cpu_ms" to DIR/results
	local out t
	TIMEFORMAT='%R %U %S'
	{ time timeout 60 qemu-system-x86_64 -machine q35,accel=tcg -cpu max -m 512 -smp 1 -nographic \
		-nodefaults -no-user-config -no-reboot -serial stdio -kernel "$1/vmlinux" \
		-initrd "$1/initramfs.img" -append "$APPEND" </dev/null >"$1/console" 2>&1; } 2>"$1/time"
	read -r real user sys <"$1/time"
	t=$(sed -n 's/^T_INIT_MS=\([0-9]*\).*/\1/p' "$1/console" | head -n1)
	echo "${t:-NA} $(awk -v r="$real" -v u="$user" -v s="$sys" 'BEGIN{printf "%d %d", r*1000, (u+s)*1000}')" >>"$1/results"
}
for c in $COMPRESSIONS; do
	SKIFF_GUEST_CACHE=$PWD/build/cache SKIFF_INITRD_COMPRESS=$c guest/build.sh "$WORK/$c" "$WORK/init" 2>/dev/null
done
for _ in $(seq "$ROUNDS"); do
	for c in $COMPRESSIONS; do boot "$WORK/$c"; done
done
median() { sort -n | sed -n "$(((ROUNDS + 1) / 2))p"; }
for c in $COMPRESSIONS; do
	r="$WORK/$c/results"
	printf '%-5s initramfs=%8d bytes  median init=%5s ms  wall=%5s ms  cpu=%5s ms\n' "$c" \
		"$(stat -c %s "$WORK/$c/initramfs.img")" "$(cut -d' ' -f1 "$r" | median)" \
		"$(cut -d' ' -f2 "$r" | median)" "$(cut -d' ' -f3 "$r" | median)"
done
