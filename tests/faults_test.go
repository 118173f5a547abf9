package tests

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Faults: a VM runtime must not lose track of a VM or leave one behind
// when a piece of it dies. These tests are skiff-only (runc has no VM).

// qemuPID reads the VMM's pid file in the container's state directory.
func (e *env) qemuPID(id string) int {
	e.t.Helper()
	deadline := time.Now().Add(cmdTimeout)
	for {
		b, err := os.ReadFile(filepath.Join(e.root, id, "qemu.pid"))
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil && pid > 0 {
			return pid
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no qemu.pid for %s", id)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// QEMU killed under a running container: `run` (the caller waiting on the
// container) exits 137, not 0, the last error of --log says the VM was
// killed, and nothing is left.
func TestFaultQEMUKilledDuringRun(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	b := e.bundle("c", sh("echo up; while true; do sleep 1; done"))
	id := e.id("c1")
	out := filepath.Join(e.dir, "out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	logPath := filepath.Join(e.dir, "log.json")
	cmd := exec.CommandContext(ctx, runtimeBin, "--root", e.root, "--log", logPath, "--log-format", "json", "run", "--bundle", b, id)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.waitOutput(out, "up")
	qemu := e.qemuPID(id)
	if err := syscall.Kill(qemu, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 137 {
		t.Errorf("run exited with %v after its VM was killed, want exit status 137", err)
	}
	if last := lastLogError(t, logPath); !strings.Contains(last, "lost the container's VM") || !strings.Contains(last, "killed") {
		t.Errorf("the last error of --log does not say the VM was killed: %q", last)
	}
	e.waitGone(qemu)
}

// The shim (the PID create reported) killed: state says stopped, and
// delete --force kills the orphaned VM and removes everything, the host
// bind mounts of its directories and files included (the leak check at
// the end looks for mounts).
func TestFaultShimKilled(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	vol, file := filepath.Join(e.dir, "vol"), filepath.Join(e.dir, "file")
	os.Mkdir(vol, 0o755)
	os.WriteFile(file, []byte("x\n"), 0o644)
	b := e.bundle("c", sh("while true; do sleep 1; done"), func(s *specs.Spec) {
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: "/fault-shim-vol", Type: "bind", Source: vol, Options: []string{"rbind", "ro"}},
			specs.Mount{Destination: "/fault-shim-file", Type: "bind", Source: file, Options: []string{"bind", "rw"}})
	})
	id := e.id("c1")
	pid, _ := e.create(id, b)
	e.mustOK(e.rt("start", id))
	qemu := e.qemuPID(id)
	if m := mountsBelow(filepath.Join(e.root, id)); len(m) < 4 {
		t.Errorf("host bind mounts of the sandbox: %q, want dirs/, its directory, files/ and its file", m)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	e.waitGone(pid)
	if st := e.state(id); st.Status != "stopped" {
		t.Errorf("status %q after the shim died, want stopped", st.Status)
	}
	e.mustOK(e.rt("delete", "--force", id))
	e.waitGone(qemu)
	if _, err := os.Stat(filepath.Join(e.root, id)); !os.IsNotExist(err) {
		t.Errorf("state directory left after delete --force: %v", err)
	}
}

// A guest that never reaches the agent (here: the kernel finds no init)
// fails create with a message quoting the guest console, also as the last
// error of --log in JSON (what containerd's runc shim reports), and leaves
// nothing; the same ID can be created again afterwards.
func TestFaultGuestWithoutAgent(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	cfg := filepath.Join(e.dir, "noagent.toml")
	os.WriteFile(cfg, []byte("[hypervisor]\nboot_timeout = 20\nkernel_params = \"rdinit=/no/such/init\"\n"), 0o644)
	b := e.bundle("c", []string{"/bin/true"})
	id := e.id("c1")
	logPath := filepath.Join(e.dir, "log.json")
	start := time.Now()
	r, _ := e.rtFiles("--config", cfg, "--log", logPath, "--log-format", "json", "create", "--bundle", b, id)
	msg := e.mustFail(r)
	if !strings.Contains(msg, "guest console") {
		t.Errorf("create's error does not quote the guest console: %q", msg)
	}
	if last := lastLogError(t, logPath); !strings.Contains(last, "guest console") || !strings.Contains(last, "Kernel panic") {
		t.Errorf("the last error of --log does not quote the guest console and its kernel panic: %q", last)
	}
	if d := time.Since(start); d > 40*time.Second {
		t.Errorf("create took %v to fail, boot_timeout is 20s", d)
	}
	if _, err := os.Stat(filepath.Join(e.root, id)); !os.IsNotExist(err) {
		t.Errorf("state directory left after a failed create: %v", err)
	}
	// The ID is free again.
	r = e.rtIn(nil, "run", "--bundle", b, id)
	if r.code != 0 {
		t.Errorf("run with the ID of a failed create: %v", r)
	}
}

// lastLogError is the message of the last "level":"error" line of a JSON
// --log, as containerd's runc shim finds it.
func lastLogError(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read --log: %v", err)
	}
	last := ""
	for _, line := range strings.Split(string(data), "\n") {
		var entry struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Level == "error" {
			last = entry.Msg
		}
	}
	if last == "" {
		t.Errorf("no \"level\":\"error\" line in --log:\n%s", data)
	}
	return last
}

// The create process killed while the VM boots: delete --force leaves
// nothing, list never shows the half-made entry, and the ID is reusable.
func TestFaultCreateKilledWhileBooting(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	b := e.bundle("c", []string{"/bin/true"})
	id := e.id("c1")
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, runtimeBin, "--root", e.root, "create", "--bundle", b, id)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.qemuPID(id) // the VM is booting
	cmd.Process.Kill()
	cmd.Wait()
	if r := e.mustOK(e.rt("list", "--quiet")); strings.Contains(r.stdout, id) {
		t.Errorf("list shows a container whose create was killed: %q", r.stdout)
	}
	e.mustOK(e.rt("delete", "--force", id))
	if _, err := os.Stat(filepath.Join(e.root, id)); !os.IsNotExist(err) {
		t.Errorf("state directory left: %v", err)
	}
	if r := e.rtIn(nil, "run", "--bundle", b, id); r.code != 0 {
		t.Errorf("run with the ID of a killed create: %v", r)
	}
}
