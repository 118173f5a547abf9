package sandbox

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procStartTime returns the start time (in clock ticks since boot) of pid,
// field 22 of /proc/PID/stat. Together with the PID it names a process
// unambiguously: a recycled PID has another start time.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: fields
	// are counted from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fields := bytes.Fields(b[i+1:])
	// fields[0] is field 3 (state); field 22 is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	if fields[0][0] == 'Z' || fields[0][0] == 'X' {
		return 0, fmt.Errorf("process %d is a zombie", pid)
	}
	return strconv.ParseUint(string(fields[19]), 10, 64)
}

// alive tells whether the process pid with the recorded start time still
// runs. A zombie counts as gone: it will never do anything again.
func alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := procStartTime(pid)
	return err == nil && (start == 0 || st == start)
}

// killAndWait sends SIGKILL to pid (if it is still the same process) and
// waits up to timeout for it to disappear.
func killAndWait(pid int, start uint64, timeout time.Duration) {
	if !alive(pid, start) {
		return
	}
	syscall.Kill(pid, syscall.SIGKILL)
	deadline := time.Now().Add(timeout)
	for alive(pid, start) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// isShim checks that pid is the shim of the container in d, by its
// command line, before anything signals it: a PID read from a file may
// have been recycled.
func isShim(pid int, d Dir) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(b), "\x00")
	id, root := filepath.Base(string(d)), filepath.Dir(string(d))
	if !strings.Contains(string(b), root) {
		return false
	}
	for i, a := range args {
		if a == "shim" && i+1 < len(args) && args[i+1] == id {
			return true
		}
	}
	return false
}
