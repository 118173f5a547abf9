package hypervisor

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// These tests boot real VMs under TCG with a stock kernel and a busybox
// initramfs built here. They skip only when no kernel is available.

const initMarker = "SKIFF-INIT-REACHED"

func testKernel(t *testing.T) string {
	t.Helper()
	k := os.Getenv("SKIFF_TEST_KERNEL")
	if k == "" {
		k = "/tmp/k/vmlinux"
	}
	if _, err := os.Stat(k); err != nil {
		t.Skipf("no guest kernel (set SKIFF_TEST_KERNEL): %v", err)
	}
	return k
}

// buildInitramfs packs /bin/busybox and an /init running script into a
// newc cpio archive. The kernel's built-in initramfs supplies /dev/console.
func buildInitramfs(t *testing.T, script string) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"bin", "proc"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("busybox needed to build the test initramfs: %v", err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	init := "#!/bin/busybox sh\nexport PATH=/bin\n/bin/busybox --install -s /bin\n" + script
	if err := os.WriteFile(filepath.Join(root, "init"), []byte(init), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "initrd.cpio")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("cpio", "-o", "-H", "newc", "--quiet")
	cmd.Dir = root
	cmd.Stdin = strings.NewReader(".\nbin\nbin/busybox\nproc\ninit\n")
	cmd.Stdout = f
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("cpio: %v: %s", err, stderr.String())
	}
	return out
}

func vmConfig(t *testing.T, kernel, initrd string) Config {
	t.Helper()
	state := t.TempDir()
	return Config{
		Name: "skiff-test", Kernel: kernel, Initrd: initrd,
		Accel: AccelTCG, VCPUs: 1, MemoryMiB: 256,
		Shares:      []Share{{Tag: "rootfs", HostPath: t.TempDir(), ReadOnly: true}},
		AgentSocket: filepath.Join(state, "agent.sock"),
		QMPSocket:   filepath.Join(state, "qmp.sock"),
		ConsoleLog:  filepath.Join(state, "console.log"),
		StderrLog:   filepath.Join(state, "qemu.log"),
		PIDFile:     filepath.Join(state, "qemu.pid"),
	}
}

// waitConsole waits until the console log holds marker.
func waitConsole(t *testing.T, cfg Config, marker string, timeout time.Duration) {
	t.Helper()
	for end := time.Now().Add(timeout); !consoleHas(cfg.ConsoleLog, marker); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			con, _ := os.ReadFile(cfg.ConsoleLog)
			errlog, _ := os.ReadFile(cfg.StderrLog)
			t.Fatalf("no %q on the console within %v\nconsole:\n%s\nqemu log:\n%s", marker, timeout, con, errlog)
		}
	}
}

func TestBootToInit(t *testing.T) {
	t.Parallel()
	h, cfg := startGuest(t, "echo "+initMarker+"\npoweroff -f\n")
	if h.PID() <= 0 {
		t.Fatalf("PID() = %d after Start", h.PID())
	}
	done := make(chan error, 1)
	go func() { done <- h.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("qemu: %v", err)
		}
	case <-time.After(30 * time.Second):
		h.Stop(context.Background(), time.Second)
		t.Fatal("guest did not power off within 30s")
	}
	waitConsole(t, cfg, initMarker, 0)
}

func TestStopHungGuest(t *testing.T) {
	t.Parallel()
	h, cfg := startGuest(t, "echo "+initMarker+"\nexec sleep 100000\n")
	pid := h.PID()
	waitConsole(t, cfg, initMarker, 30*time.Second)

	start := time.Now()
	if err := h.Stop(context.Background(), 3*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second+killWait {
		t.Errorf("Stop took %v", d)
	}
	if alive(pid) {
		t.Fatalf("qemu pid %d still alive after Stop", pid)
	}
	if err := h.Wait(); err != nil {
		t.Errorf("Wait after a QMP quit: %v", err)
	}
}

// A VMM that never answers QMP (here a stand-in that just sleeps) is
// SIGKILLed when the timeout runs out.
func TestStopKillsUnresponsiveVMM(t *testing.T) {
	t.Parallel()
	cfg := typicalConfig(t)
	if err := os.WriteFile(cfg.Binary, []byte("#!/bin/sh\nexec sleep 100000\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	h, err := NewQEMU(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	pid := h.PID()
	start := time.Now()
	if err := h.Stop(context.Background(), 300*time.Millisecond); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
		t.Errorf("Stop took %v, want just over the 300ms timeout", d)
	}
	if alive(pid) {
		t.Fatalf("pid %d alive after Stop", pid)
	}
	if err := h.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Wait = %v, want killed", err)
	}
}

// startBareQEMU runs a real QEMU with no guest (-machine none), enough
// for pidfile, QMP and kill tests.
func startBareQEMU(t *testing.T) (Config, Hypervisor) {
	t.Helper()
	cfg := typicalConfig(t)
	cfg.Binary = ""
	if _, err := exec.LookPath(DefaultBinary()); err != nil {
		t.Skipf("no %s: %v", DefaultBinary(), err)
	}
	q, err := newQEMU(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Only the command line changes: no machine, paused.
	args := []string{"-machine", "none", "-S", "-nodefaults", "-nographic",
		"-qmp", "unix:" + q.cfg.QMPSocket + ",server=on,wait=off", "-pidfile", q.cfg.PIDFile}
	cmd := exec.Command(q.cfg.Binary, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(q.cfg.PIDFile); len(b) > 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatal("qemu wrote no pidfile")
		}
	}
	// A second handle that did not start the VM, as another skiff process has.
	other, err := NewQEMU(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return q.cfg, other
}

func TestForeignStopAndPID(t *testing.T) {
	t.Parallel()
	cfg, h := startBareQEMU(t)
	pid := h.PID()
	if pid <= 0 {
		t.Fatalf("PID() = %d for a running VM started elsewhere", pid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := DialQMP(ctx, cfg.QMPSocket)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.QueryStatus(ctx)
	c.Close()
	if err != nil || st != "prelaunch" && st != "paused" {
		t.Fatalf("QueryStatus = %q, %v", st, err)
	}
	if err := h.Stop(ctx, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Fatalf("pid %d alive after Stop", pid)
	}
}

func TestKillVMM(t *testing.T) {
	t.Parallel()
	cfg, h := startBareQEMU(t)
	pid := h.PID()

	// A pidfile naming another process (PID reuse) must not be acted on.
	other := filepath.Join(t.TempDir(), "other.pid")
	os.WriteFile(other, []byte(fmt.Sprint(os.Getpid())), 0o644)
	if err := KillVMM(other); err != nil {
		t.Fatalf("KillVMM on a reused PID: %v", err)
	}

	if err := KillVMM(cfg.PIDFile); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Fatalf("pid %d alive after KillVMM", pid)
	}
	if err := KillVMM(cfg.PIDFile); err != nil {
		t.Errorf("second KillVMM: %v", err)
	}
	if err := KillVMM(filepath.Join(t.TempDir(), "absent.pid")); err != nil {
		t.Errorf("KillVMM without pidfile: %v", err)
	}
}

// The probe mechanism, run under TCG since KVM cannot boot guests here.
func TestProbeGuest(t *testing.T) {
	t.Parallel()
	kernel := testKernel(t)
	initrd := buildInitramfs(t, fmt.Sprintf(
		"mount -t proc proc /proc\ngrep -q %s /proc/cmdline && echo %s\npoweroff -f\n",
		protocol.ProbeCmdline, protocol.ProbeOK))
	p := ProbeConfig{Binary: DefaultBinary(), Kernel: kernel, Initrd: initrd, Timeout: 30 * time.Second}
	ok, why, err := probeGuest(context.Background(), AccelTCG, p)
	if err != nil || !ok {
		t.Fatalf("probe = %v, %q, %v", ok, why, err)
	}

	// A guest that never answers fails the probe within its timeout.
	p.Initrd = buildInitramfs(t, "exec sleep 100000\n")
	p.Timeout = 500 * time.Millisecond
	start := time.Now()
	ok, why, err = probeGuest(context.Background(), AccelTCG, p)
	if err != nil || ok || !strings.Contains(why, "within") {
		t.Fatalf("silent probe = %v, %q, %v", ok, why, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("failed probe took %v", d)
	}
}

// startGuest starts a VM of the test kernel whose /init runs script.
func startGuest(t *testing.T, script string) (Hypervisor, Config) {
	t.Helper()
	cfg := vmConfig(t, testKernel(t), buildInitramfs(t, script))
	h, err := NewQEMU(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return h, cfg
}
