package tests

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// The VMM faces a hostile guest: these tests look at the QEMU processes a
// sandbox runs, from the host, as an attacker who took the guest over would
// hope to find them.

// qemuBelow returns the PIDs of the QEMU processes whose command line names
// a path below dir (a sandbox's state directory, a factory directory).
func qemuBelow(dir string) []int {
	var pids []int
	for pid, cmd := range qemuProcesses() {
		if strings.Contains(string(cmd), dir+"/") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// procStatus returns the value of one field of /proc/PID/status.
func procStatus(t *testing.T, pid int, field string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatalf("status of %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == field {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("/proc/%d/status has no %s field", pid, field)
	return ""
}

// runningSandbox creates and starts a container that runs until killed and
// returns its ID, its PID (the shim's) and its QEMU's PID.
func (e *env) runningSandbox(name string, args ...string) (id string, pid, qemu int) {
	e.t.Helper()
	id = e.id(name)
	pid, out := e.create(id, e.bundle(name, sh("echo UP; while true; do sleep 1; done")))
	e.mustOK(e.rt("start", id))
	e.waitOutput(out, "UP")
	pids := qemuBelow(e.dir)
	if len(pids) != 1 {
		e.t.Fatalf("want one QEMU below %s, found %v", e.dir, pids)
	}
	return id, pid, pids[0]
}

// QEMU filters its own system calls (-sandbox): mode 2 is a seccomp
// filter, installed before the guest ran.
func TestQEMURunsUnderSeccomp(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	id, pid, qemu := e.runningSandbox("seccomp")
	if got := procStatus(t, qemu, "Seccomp"); got != "2" {
		t.Errorf("QEMU %d: Seccomp: %s, want 2 (a filter)", qemu, got)
	}
	e.mustOK(e.rt("kill", id, "KILL"))
	e.waitGone(pid)
	e.mustOK(e.rt("delete", id))
}
