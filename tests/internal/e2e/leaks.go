package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// AssertNoLeaks fails the test if anything of this test's runtime is left:
// a process naming its directories, a container directory under --root, a
// mount below its directories, or a container process still alive.
func (e *Env) AssertNoLeaks() {
	e.T.Helper()
	if leaks := e.waitNoLeaks(); len(leaks) > 0 {
		e.T.Errorf("leaks:\n  %s", strings.Join(leaks, "\n  "))
	}
}

// AssertNothingFor checks that a refused verb left no trace of id (any
// container when id is ""): nothing in --root, nothing leaked.
func (e *Env) AssertNothingFor(id string) {
	e.T.Helper()
	if id != "" {
		if _, err := os.Lstat(filepath.Join(e.Root, id)); err == nil {
			e.T.Errorf("refused container %q left %s", id, filepath.Join(e.Root, id))
		}
	}
	entries, _ := os.ReadDir(e.Root)
	for _, ent := range entries {
		e.T.Errorf("refused container %q left %s in --root", id, ent.Name())
	}
	e.AssertNoLeaks()
}

func (e *Env) waitNoLeaks() []string {
	deadline := time.Now().Add(SettleTimeout)
	for {
		leaks := FindLeaks(e.Dir, e.trackedPIDs())
		if len(leaks) == 0 || time.Now().After(deadline) {
			return leaks
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// FindLeaks lists what is left of a runtime's activity below dir: processes
// whose command line names a path below dir (shims, qemu and their sockets
// live under --root), directories in dir/r (the --root), mounts below dir,
// and any of pids still alive.
func FindLeaks(dir string, pids []int) []string {
	var leaks []string
	self := os.Getpid()
	forEachProcess(func(pid int, cmd []byte) {
		if pid == self {
			return
		}
		for _, arg := range strings.Split(string(cmd), "\x00") {
			if arg == dir || strings.Contains(arg, dir+"/") {
				leaks = append(leaks, fmt.Sprintf("process %d: %s", pid, procCmdline(cmd)))
				return
			}
		}
	})
	for _, pid := range pids {
		if Alive(pid) {
			cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			leaks = append(leaks, fmt.Sprintf("container process %d still alive: %s", pid, procCmdline(cmd)))
		}
	}
	// Only the per-test layout has a --root at dir/r; the suite-level
	// check passes suiteDir, whose test directories are removed on success.
	entries, _ := os.ReadDir(filepath.Join(dir, "r"))
	for _, ent := range entries {
		if ent.IsDir() {
			leaks = append(leaks, "container directory left in --root: "+filepath.Join(dir, "r", ent.Name()))
		}
	}
	for _, m := range MountsBelow(dir) {
		leaks = append(leaks, "mount left: "+m)
	}
	return leaks
}

// forEachProcess calls f with the PID and raw command line of every live
// process on the host (zombies and kernel threads left out).
func forEachProcess(f func(pid int, cmd []byte)) {
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || !Alive(pid) {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil || len(cmd) == 0 {
			continue
		}
		f(pid, cmd)
	}
}

// Alive reports whether pid exists and is not a zombie (a zombie has
// exited; only its parent's bookkeeping is left).
func Alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name, which may itself
	// contain parentheses and spaces.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

// MountsBelow lists the host's mount points at or below dir.
func MountsBelow(dir string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var found []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := strings.ReplaceAll(f[4], `\040`, " ")
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			found = append(found, mp)
		}
	}
	return found
}

func procCmdline(cmd []byte) string {
	return strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
}

// QEMUProcesses maps PID to command line of every qemu process on the host.
func QEMUProcesses() map[int][]byte {
	found := map[int][]byte{}
	forEachProcess(func(pid int, cmd []byte) {
		argv0 := strings.SplitN(string(cmd), "\x00", 2)[0]
		if strings.HasPrefix(filepath.Base(argv0), "qemu") {
			found[pid] = cmd
		}
	})
	return found
}

// QEMUNaming is the PID of the qemu process whose command line contains
// s (a container ID, say), 0 if there is none.
func QEMUNaming(s string) int {
	for pid, cmd := range QEMUProcesses() {
		if strings.Contains(string(cmd), s) {
			return pid
		}
	}
	return 0
}

// AssertNoStateDir fails the test if id still has a directory in --root;
// after says after what.
func (e *Env) AssertNoStateDir(id, after string) {
	e.T.Helper()
	if _, err := os.Stat(filepath.Join(e.Root, id)); !os.IsNotExist(err) {
		e.T.Errorf("state directory of %s left after %s (%v)", id, after, err)
	}
}
