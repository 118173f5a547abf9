package tests

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// Faults: a VM runtime must not lose track of a VM or leave one behind
// when a piece of it dies (QEMU, the shim, the guest's agent, the create
// verb itself). These tests are skiff-only (runc has no VM).

// QEMU killed under a running container: `run` (the caller waiting on the
// container) exits 137, not 0, the last error of --log says the VM was
// killed, and nothing is left.
func TestFaultQEMUKilledDuringRun(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	b := e.Bundle("c", e2e.Sh("echo up; while true; do sleep 1; done"))
	cmd, logPath, qemu := runInBackground(e, e.ID("c1"), b)
	killAndWantVMLost(e, qemu, cmd, logPath, "killed")
	e.WaitGone(qemu)
}

// killAndWantVMLost kills victim (a VM's QEMU, or a piece it needs) under
// a container's `run` (cmd): run must exit 137 and the last error of its
// --log must say the VM was lost, and why (want).
func killAndWantVMLost(e *e2e.Env, victim int, cmd *exec.Cmd, logPath, want string) {
	e.T.Helper()
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		e.T.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 137 {
		e.T.Errorf("run exited with %v after process %d was killed, want exit status 137", err, victim)
	}
	if last := e2e.LastLogError(e.T, logPath); !strings.Contains(last, "lost the container's VM") || !strings.Contains(last, want) {
		e.T.Errorf("the last error of --log does not say the VM was lost (%s): %q", want, last)
	}
}

// runInBackground starts `run` of bundle b as id, with a JSON --log and
// the global flags globals, waits for the container to print "up", and
// returns the command (to wait on), the --log file and the VM's QEMU.
func runInBackground(e *e2e.Env, id, b string, globals ...string) (cmd *exec.Cmd, logPath string, qemu int) {
	e.T.Helper()
	out := e.WriteFile("out-"+id, "")
	f, err := os.OpenFile(out, os.O_WRONLY, 0)
	if err != nil {
		e.T.Fatal(err)
	}
	e.T.Cleanup(func() { f.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), e2e.CmdTimeout)
	e.T.Cleanup(cancel)
	logPath = filepath.Join(e.Dir, "log-"+id+".json")
	cmd = e.Command(ctx, append(globals, "--log", logPath, "--log-format", "json", "run", "--bundle", b, id)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		e.T.Fatal(err)
	}
	e.WaitOutput(out, "up")
	return cmd, logPath, e.QEMUPID(id)
}

// The shim (the PID create reported) killed: state says stopped, and
// delete --force kills the orphaned VM and removes everything, the host
// bind mounts of its directories and files included (the leak check at
// the end looks for mounts).
func TestFaultShimKilled(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	vol, file := e.Mkdir("vol"), e.WriteFile("file", "x\n")
	b := e.Bundle("c", e2e.Sh("while true; do sleep 1; done"), e2e.Mounts(
		e2e.Bind("/fault-shim-vol", vol, "rbind", "ro"),
		e2e.Bind("/fault-shim-file", file, "bind", "rw")))
	id := e.ID("c1")
	pid, _ := e.CreateStarted(id, b, "")
	qemu := e.QEMUPID(id)
	if m := e2e.MountsBelow(filepath.Join(e.Root, id)); len(m) < 4 {
		t.Errorf("host bind mounts of the sandbox: %q, want dirs/, its directory, files/ and its file", m)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	e.WaitGone(pid)
	if st := e.State(id); st.Status != "stopped" {
		t.Errorf("status %q after the shim died, want stopped", st.Status)
	}
	e.MustOK(e.RT("delete", "--force", id))
	e.WaitGone(qemu)
	e.AssertNoStateDir(id, "delete --force")
}

// The guest's agent crashing (it is PID 1 of the guest: the guest kernel
// panics and the VM ends) ends that sandbox: run reports the container
// killed, nothing hangs, nothing is left.
func TestFaultAgentCrash(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	// Without a PID namespace the container shares the guest's, where the
	// agent is PID 1; a SIGSEGV sent to it crashes the Go runtime.
	b := e.Bundle("c", e2e.Sh("echo before; kill -SEGV 1; sleep 30; echo survived"), e2e.Privileged)
	r := e.RT("run", "--bundle", b, e.ID("c1"))
	if r.Code != 137 || strings.Contains(r.Stdout, "survived") {
		t.Errorf("agent crash: %v, want exit 137 and no survivor", r)
	}
}

// A guest that never reaches the agent (here: the kernel finds no init)
// fails create with a message quoting the guest console, also as the last
// error of --log in JSON (what containerd's runc shim reports), and leaves
// nothing; the same ID can be created again afterwards.
func TestFaultGuestWithoutAgent(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	// The guest panics in seconds; boot_timeout is only the bound, and
	// generous, since a loaded CI machine boots many times slower.
	cfg := e.WriteFile("noagent.toml", "[hypervisor]\nboot_timeout = 40\nkernel_params = \"rdinit=/no/such/init\"\n")
	b := e.Bundle("c", []string{"/bin/true"})
	id := e.ID("c1")
	logPath := filepath.Join(e.Dir, "log.json")
	start := time.Now()
	r, _ := e.RTFiles("--config", cfg, "--log", logPath, "--log-format", "json", "create", "--bundle", b, id)
	msg := e.MustFail(r)
	if !strings.Contains(msg, "guest console") {
		t.Errorf("create's error does not quote the guest console: %q", msg)
	}
	if last := e2e.LastLogError(t, logPath); !strings.Contains(last, "guest console") || !strings.Contains(last, "Kernel panic") {
		t.Errorf("the last error of --log does not quote the guest console and its kernel panic: %q", last)
	}
	// boot_timeout is honoured: the failure comes by the time it
	// expires, not at CmdTimeout (60 s).
	if d := time.Since(start); d > 55*time.Second {
		t.Errorf("create took %v to fail, boot_timeout is 40s", d)
	}
	e.AssertNoStateDir(id, "a failed create")
	// The ID is free again.
	if r := e.RT("run", "--bundle", b, id); r.Code != 0 {
		t.Errorf("run with the ID of a failed create: %v", r)
	}
}

// The create process killed while the VM boots: delete --force leaves
// nothing, list never shows the half-made entry, and the ID is reusable.
func TestFaultCreateKilledWhileBooting(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	b := e.Bundle("c", []string{"/bin/true"})
	id := e.ID("c1")
	ctx, cancel := context.WithTimeout(context.Background(), e2e.CmdTimeout)
	defer cancel()
	cmd := e.Command(ctx, "create", "--bundle", b, id)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.QEMUPID(id) // the VM is booting
	cmd.Process.Kill()
	cmd.Wait()
	if r := e.MustOK(e.RT("list", "--quiet")); strings.Contains(r.Stdout, id) {
		t.Errorf("list shows a container whose create was killed: %q", r.Stdout)
	}
	e.MustOK(e.RT("delete", "--force", id))
	e.AssertNoStateDir(id, "delete --force")
	if r := e.RT("run", "--bundle", b, id); r.Code != 0 {
		t.Errorf("run with the ID of a killed create: %v", r)
	}
}
