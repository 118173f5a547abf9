package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/skiff-oci/skiff/internal/proc"
	"golang.org/x/sys/unix"
)

// killWait bounds how long we wait for a SIGKILLed VMM to disappear.
const killWait = 5 * time.Second

// errNotRunning means the pidfile names no live VMM of ours: it is missing,
// or its PID has exited (and may since belong to another process).
var errNotRunning = errors.New("VMM not running")

// KillVMM kills the QEMU whose pidfile is pidFile and waits (up to 5 s) for
// it to be gone. It is for callers that are not QEMU's parent, such as
// `delete --force` after the shim died. A missing pidfile, or a PID that is
// no longer that QEMU, means there is nothing to kill: a process never
// changes PID, so if the PID now runs something else, our QEMU has exited.
func KillVMM(pidFile string) error {
	pid, err := readVMMPID(pidFile)
	if errors.Is(err, errNotRunning) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("kill qemu: %w", err)
	}
	abs, _ := pidFilePath(pidFile)
	// A pidfd pins the process: once it is open and the check below passes,
	// the signal cannot reach a process that reused the PID.
	fd, err := unix.PidfdOpen(pid, 0)
	switch {
	case err == nil:
		defer unix.Close(fd)
		if !isVMM(pid, abs) {
			return nil
		}
		err = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
	case errors.Is(err, unix.ESRCH):
		return nil
	default: // kernel without pidfd (before 5.3): a small race remains
		err = unix.Kill(pid, unix.SIGKILL)
	}
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill qemu pid %d: %w", pid, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), killWait)
	defer cancel()
	if !waitGone(ctx, pid) {
		return fmt.Errorf("kill qemu: pid %d still running %v after SIGKILL", pid, killWait)
	}
	return nil
}

// readVMMPID reads a QEMU pidfile and returns the PID if it still runs the
// QEMU that wrote that file, errNotRunning if not.
func readVMMPID(pidFile string) (int, error) {
	abs, err := pidFilePath(pidFile)
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile(abs)
	if errors.Is(err, os.ErrNotExist) {
		return 0, errNotRunning
	}
	if err != nil {
		return 0, fmt.Errorf("read pidfile: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pidfile %s holds %q, not a PID", abs, b)
	}
	if !isVMM(pid, abs) {
		return 0, errNotRunning
	}
	return pid, nil
}

// pidFilePath is the path QEMU was given as -pidfile: absolute, and with
// symlinks resolved (a sandbox whose VM was adopted from the pool links
// its pidfile to the one QEMU was started with).
func pidFilePath(pidFile string) (string, error) {
	abs, err := filepath.Abs(pidFile)
	if err != nil {
		return "", fmt.Errorf("pidfile %s: %w", pidFile, err)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	return abs, nil
}

// isVMM reports whether pid is a live QEMU started with -pidfile pidFile.
// Checking the pidfile argument, not just the name, tells our VM apart from
// another QEMU that got the recycled PID.
func isVMM(pid int, pidFile string) bool {
	argv := proc.Cmdline(pid)
	if argv == nil { // gone, or a zombie
		return false
	}
	if !strings.HasPrefix(filepath.Base(argv[0]), "qemu") {
		return false
	}
	for i := 1; i+1 < len(argv); i++ {
		if argv[i] == "-pidfile" && argv[i+1] == pidFile {
			return true
		}
	}
	return false
}

// alive reports whether pid exists and is not a zombie. A zombie has
// released everything but its exit status, which is its parent's business.
func alive(pid int) bool { return proc.Alive(pid, 0) }

// waitGone polls until pid is gone or ctx ends; it reports whether the
// process is gone. Polling /proc works for processes we are not the parent of.
func waitGone(ctx context.Context, pid int) bool {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for alive(pid) {
		select {
		case <-ctx.Done():
			return !alive(pid)
		case <-t.C:
		}
	}
	return true
}

// VMMPID is the PID of the live QEMU started with -pidfile pidFile, 0 if
// there is none.
func VMMPID(pidFile string) int {
	pid, err := readVMMPID(pidFile)
	if err != nil {
		return 0
	}
	return pid
}
