package tests

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
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

// Clones of one template start from the same guest memory, random state
// included: each gets a VM generation ID of its own (QEMU's vmgenid), which
// its guest kernel is told of, and reseeds from.
func TestClonesHaveTheirOwnVMGenerationID(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	guids := map[string]bool{}
	for _, name := range []string{"gen-a", "gen-b"} {
		id := e.id(name)
		pid, out := e.create(id, e.bundle(name, sh("echo VMGENID $(ls /sys/bus/acpi/drivers/vmgenid/); while true; do sleep 1; done")))
		e.mustOK(e.rt("start", id))
		if got := e.waitOutput(out, "VMGENID"); !strings.Contains(got, "QEMUVGID") {
			t.Errorf("%s: the guest has no vmgenid device bound: %q", name, got)
		}
		t.Cleanup(func() {
			e.rt("kill", id, "KILL")
			e.waitGone(pid)
			e.rt("delete", id)
		})
	}
	for _, pid := range qemuBelow(e.dir) {
		guids[qmpGenerationID(t, pid)] = true
	}
	if len(guids) != 2 {
		t.Errorf("two sandboxes' VMs have generation IDs %v, want two different ones", guids)
	}
}

// qmpGenerationID asks the QEMU of pid for its VM generation ID, over the
// QMP socket its command line names.
func qmpGenerationID(t *testing.T, pid int) string {
	t.Helper()
	cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	args := strings.Split(string(cmd), "\x00")
	var sock string
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-qmp" {
			sock, _, _ = strings.Cut(strings.TrimPrefix(args[i+1], "unix:"), ",server")
		}
	}
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatalf("QMP of QEMU %d: %v", pid, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	r.ReadString('\n') // the greeting
	fmt.Fprintln(conn, `{"execute":"qmp_capabilities"}`)
	fmt.Fprintln(conn, `{"execute":"query-vm-generation-id","id":"g"}`)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("QMP of QEMU %d: %v", pid, err)
		}
		var m struct {
			ID     string `json:"id"`
			Return struct {
				GUID string `json:"guid"`
			} `json:"return"`
		}
		if json.Unmarshal([]byte(line), &m) == nil && m.ID == "g" {
			return m.Return.GUID
		}
	}
}
