// Package proc names host processes unambiguously from /proc: a PID and the
// start time /proc/PID/stat gives it, so that a recycled PID is never taken
// for the process a state file recorded. It must not import anything of
// skiff's: the state store and the hypervisor backends both use it.
package proc

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// stat returns the fields of /proc/PID/stat after the command name (field 3
// onwards). The command name may hold spaces and parentheses: fields are
// counted from the last ')'.
func stat(pid int) ([][]byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fields := bytes.Fields(b[i+1:])
	if len(fields) < 20 || len(fields[0]) == 0 {
		return nil, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return fields, nil
}

// StartTime returns the start time of pid in clock ticks since boot (field
// 22 of /proc/PID/stat). A zombie has none: it will never run again.
func StartTime(pid int) (uint64, error) {
	fields, err := stat(pid)
	if err != nil {
		return 0, err
	}
	if s := fields[0][0]; s == 'Z' || s == 'X' {
		return 0, fmt.Errorf("process %d is a zombie", pid)
	}
	return strconv.ParseUint(string(fields[19]), 10, 64)
}

// userHZ is the unit of /proc's clock ticks (USER_HZ), 100 on every
// architecture Linux runs containers on.
const userHZ = 100

// Now returns the time since boot in the clock ticks StartTime uses, so
// that "did this process start before that moment" is one comparison.
func Now() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return uint64(ts.Sec)*userHZ + uint64(ts.Nsec)/(1e9/userHZ)
}

// Parent returns the PID of pid's parent (field 4 of /proc/PID/stat).
func Parent(pid int) (int, error) {
	fields, err := stat(pid)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(string(fields[1]))
}

// Alive tells whether pid runs and, when start is not 0, is still the
// process that had that start time. A zombie counts as gone.
func Alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := StartTime(pid)
	return err == nil && (start == 0 || st == start)
}

// KillAndWait sends SIGKILL to pid if it is still the same process and
// waits up to timeout for it to be gone; it reports whether it is.
func KillAndWait(pid int, start uint64, timeout time.Duration) bool {
	if !Alive(pid, start) {
		return true
	}
	syscall.Kill(pid, syscall.SIGKILL)
	return WaitGone(pid, start, timeout)
}

// WaitGone polls until pid (with start, 0 for any) is gone or timeout
// passed, and reports whether it is gone. Polling /proc works for
// processes this one is not the parent of.
func WaitGone(pid int, start uint64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for Alive(pid, start) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// Cmdline returns pid's argv, nil for a process that is gone or a zombie.
func Cmdline(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
}
