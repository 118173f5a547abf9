package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// debug-console: a shell in the guest itself, for operators. Refused
// unless the configuration enables it; enabled, it runs in the guest's own
// root and PID namespace, where PID 1 is the agent (the initramfs's /init),
// not in the container's (whose PID 1 is the container's process).
func TestDebugConsole(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	b := e.bundle("c", sh("sleep 600"))
	id := e.id("c1")
	e.create(id, b)
	e.mustOK(e.rt("start", id))

	msg := e.mustFail(e.rtIn(strings.NewReader("exit 0\n"), "debug-console", id))
	if !strings.Contains(msg, "debug_console = true") {
		t.Errorf("debug-console refused without saying how to enable it: %q", msg)
	}

	cfg := filepath.Join(e.dir, "debug.toml")
	if err := os.WriteFile(cfg, []byte("[runtime]\ndebug_console = true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.rtIn(strings.NewReader("echo $$; cat /proc/1/comm; exit 7\n"), "--config", cfg, "debug-console", id)
	if r.code != 7 {
		t.Errorf("debug-console exited %d, want the shell's status 7: %v", r.code, r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || lines[1] != "init" {
		t.Errorf("debug-console output %q, want the shell's PID and the guest's PID 1, the agent (comm \"init\")", r.stdout)
	}
	if len(lines) > 0 && lines[0] == "1" {
		t.Errorf("the debug shell is PID 1: %q", r.stdout)
	}

	// On a terminal: the shell gets a terminal of the guest, at the
	// caller's size.
	master, slave := openPty(t)
	if err := unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 27, Col: 83}); err != nil {
		t.Fatal(err)
	}
	tr := readTerminal(master)
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, runtimeBin, "--root", e.root, "--config", cfg, "debug-console", id)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tr.waitFor(t, "[skiff guest /]# ", nil)
	master.Write([]byte("tty; stty size; exit 4\n"))
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 4 {
		t.Errorf("debug-console on a terminal exited %d, want 4; terminal showed %q", code, tr)
	}
	tr.waitFor(t, "27 83", nil)
	if !strings.Contains(tr.String(), "/dev/pts/") {
		t.Errorf("terminal showed %q, want a /dev/pts path from tty", tr)
	}

	e.mustOK(e.rt("kill", id, "KILL"))
	e.waitStatus(id, "stopped")
	e.mustOK(e.rt("delete", id))
}
