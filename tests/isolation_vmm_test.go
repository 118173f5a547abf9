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

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// The VMM faces a hostile guest: these tests look at the QEMU processes a
// sandbox runs, from the host, as an attacker who took the guest over would
// hope to find them.

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
func runningSandbox(e *e2e.Env, name string, args ...string) (id string, pid, qemu int) {
	e.T.Helper()
	id = e.ID(name)
	pid, out := e.Create(id, e.Bundle(name, e2e.Sh("echo UP; while true; do sleep 1; done")), args...)
	e.MustOK(e.RT("start", id))
	e.WaitOutput(out, "UP")
	return id, pid, e.QEMUPID(id)
}

// QEMU filters its own system calls (-sandbox): mode 2 is a seccomp
// filter, installed before the guest ran.
func TestQEMURunsUnderSeccomp(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	id, pid, qemu := runningSandbox(e, "seccomp")
	if got := procStatus(t, qemu, "Seccomp"); got != "2" {
		t.Errorf("QEMU %d: Seccomp: %s, want 2 (a filter)", qemu, got)
	}
	e.MustOK(e.RT("kill", id, "KILL"))
	e.WaitGone(pid)
	e.MustOK(e.RT("delete", id))
}

// The VM dies with its shim: a SIGKILLed shim (the OOM killer, an operator)
// leaves no VM running, and delete --force then leaves nothing.
func TestVMDiesWithItsShim(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	id, pid, qemu := runningSandbox(e, "orphan")
	killShim(e, id, pid, qemu)
}

// killShim SIGKILLs a sandbox's shim and checks that its QEMU follows
// within a few seconds and that delete --force cleans up.
func killShim(e *e2e.Env, id string, pid, qemu int) {
	e.T.Helper()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		e.T.Fatal(err)
	}
	e.WaitGone(pid)
	deadline := time.Now().Add(5 * time.Second)
	for e2e.Alive(qemu) {
		if time.Now().After(deadline) {
			e.T.Errorf("QEMU %d still runs 5s after its shim %d was killed", qemu, pid)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.MustOK(e.RT("delete", "--force", id))
}

// The same for a VM taken from the pool: it outlived the filler that
// started it, and must die with the shim that took it.
func TestPooledVMDiesWithItsShim(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	cfg, _ := e.FactoryConfig(1)
	e.MustOK(e.RT("--config", cfg, "factory", "init"))
	member := waitPoolReady(e, cfg, 1)[0]
	id := e.ID("pooled")
	pidFile := filepath.Join(e.Dir, "pooled.pid")
	r, out := e.RTFiles("--config", cfg, "create", "--bundle", e.Bundle("pooled", e2e.Sh("echo UP; while true; do sleep 1; done")), "--pid-file", pidFile, id)
	e.MustOK(r)
	b, _ := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	e.Track(pid)
	e.MustOK(e.RT("start", id))
	e.WaitOutput(out, "UP")
	if !e2e.Alive(member.pid) {
		t.Fatalf("the pooled VM's QEMU %d is not running", member.pid)
	}
	killShim(e, id, pid, member.pid)
	// The refill started behind the taken VM waits in the pool.
	e.MustOK(e.RT("--config", cfg, "factory", "destroy"))
}

// Clones of one template start from the same guest memory, random state
// included: each gets a VM generation ID of its own (QEMU's vmgenid), which
// its guest kernel is told of, and reseeds from.
func TestClonesHaveTheirOwnVMGenerationID(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	guids := map[string]bool{}
	var ids []string
	for _, name := range []string{"gen-a", "gen-b"} {
		id := e.ID(name)
		ids = append(ids, id)
		pid, out := e.Create(id, e.Bundle(name, e2e.Sh("echo VMGENID $(ls /sys/bus/acpi/drivers/vmgenid/); while true; do sleep 1; done")))
		e.MustOK(e.RT("start", id))
		if got := e.WaitOutput(out, "VMGENID"); !strings.Contains(got, "QEMUVGID") {
			t.Errorf("%s: the guest has no vmgenid device bound: %q", name, got)
		}
		t.Cleanup(func() {
			e.RT("kill", id, "KILL")
			e.WaitGone(pid)
			e.RT("delete", id)
		})
	}
	for _, id := range ids {
		guids[qmpGenerationID(t, filepath.Join(e.Root, id, "qmp.sock"))] = true
	}
	if len(guids) != 2 {
		t.Errorf("two sandboxes' VMs have generation IDs %v, want two different ones", guids)
	}
}

// qmpGenerationID asks a sandbox's QEMU for its VM generation ID, over
// the QMP socket in its state directory.
func qmpGenerationID(t *testing.T, sock string) string {
	t.Helper()
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatalf("QMP %s: %v", sock, err)
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
			t.Fatalf("QMP %s: %v", sock, err)
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
