package tests

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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

// The VM dies with its shim: a SIGKILLed shim (the OOM killer, an operator)
// leaves no VM running, and delete --force then leaves nothing.
func TestVMDiesWithItsShim(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	id, pid, qemu := e.runningSandbox("orphan")
	e.killShim(id, pid, qemu)
}

// killShim SIGKILLs a sandbox's shim and checks that its QEMU follows
// within a few seconds and that delete --force cleans up.
func (e *env) killShim(id string, pid, qemu int) {
	e.t.Helper()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		e.t.Fatal(err)
	}
	e.waitGone(pid)
	deadline := time.Now().Add(5 * time.Second)
	for alive(qemu) {
		if time.Now().After(deadline) {
			e.t.Errorf("QEMU %d still runs 5s after its shim %d was killed", qemu, pid)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.mustOK(e.rt("delete", "--force", id))
}

// The same for a VM taken from the pool: it outlived the filler that
// started it, and must die with the shim that took it.
func TestPooledVMDiesWithItsShim(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	cfg, _ := e.poolConfig(1)
	e.mustOK(e.rt("--config", cfg, "factory", "init"))
	member := e.waitPoolReady(cfg, 1)[0]
	id := e.id("pooled")
	pidFile := filepath.Join(e.dir, "pooled.pid")
	r, out := e.rtFiles("--config", cfg, "create", "--bundle", e.bundle("pooled", sh("echo UP; while true; do sleep 1; done")), "--pid-file", pidFile, id)
	e.mustOK(r)
	b, _ := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	e.track(pid)
	e.mustOK(e.rt("start", id))
	e.waitOutput(out, "UP")
	if !alive(member.pid) {
		t.Fatalf("the pooled VM's QEMU %d is not running", member.pid)
	}
	e.killShim(id, pid, member.pid)
	// The refill started behind the taken VM waits in the pool.
	e.mustOK(e.rt("--config", cfg, "factory", "destroy"))
}
