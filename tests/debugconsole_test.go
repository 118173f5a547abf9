package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
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

// The shares that carry a sandbox's bind-mounted directories and files are
// writable for the mounts that are, but even the guest's root (here
// through the debug console, as a guest kernel the container took over
// could) cannot create anything beside them on the host, nor write a
// read-only file or directory.
func TestGuestRootCannotWriteOutsideItsMounts(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	rw, ro := filepath.Join(e.dir, "rw", "data"), filepath.Join(e.dir, "ro", "data")
	for _, f := range []string{rw, ro} {
		os.MkdirAll(filepath.Dir(f), 0o755)
		os.WriteFile(f, []byte("start\n"), 0o644)
	}
	rwDir, roDir := filepath.Join(e.dir, "rw-dir"), filepath.Join(e.dir, "ro-dir")
	os.Mkdir(rwDir, 0o755)
	os.Mkdir(roDir, 0o755)
	b := e.bundle("c", sh("sleep 600"), func(s *specs.Spec) {
		s.Mounts = append(s.Mounts,
			// Targets no other test uses: with a read-only root they are
			// created (as files) in the rootfs the tests share.
			specs.Mount{Destination: "/guest-root-rw-file", Type: "bind", Source: rw, Options: []string{"bind", "rw"}},
			specs.Mount{Destination: "/guest-root-ro-file", Type: "bind", Source: ro, Options: []string{"bind", "ro"}},
			specs.Mount{Destination: "/guest-root-rw-dir", Type: "bind", Source: rwDir, Options: []string{"rbind", "rw"}},
			specs.Mount{Destination: "/guest-root-ro-dir", Type: "bind", Source: roDir, Options: []string{"rbind", "ro"}})
	})
	id := e.id("files")
	e.create(id, b)
	e.mustOK(e.rt("start", id))
	cfg := filepath.Join(e.dir, "debug.toml")
	os.WriteFile(cfg, []byte("[runtime]\ndebug_console = true\n"), 0o644)
	// The directories' share is m0, directory K at K; the files' is m1,
	// file K in K/.
	script := `for s in /run/skiff/shares/m0 /run/skiff/shares/m1; do
touch $s/evil 2>/dev/null && echo create=yes || echo create=no
mkdir $s/evil-dir 2>/dev/null && echo mkdir=yes || echo mkdir=no
done
s=/run/skiff/shares/m0
touch $s/0/guest && echo rwdir=written
touch $s/1/guest 2>/dev/null && echo rodir=written || echo rodir=refused
s=/run/skiff/shares/m1
echo guest >> $s/0/data && echo rwfile=written
echo guest >> $s/1/data 2>/dev/null && echo rofile=written || echo rofile=refused
`
	r := e.mustOK(e.rtIn(strings.NewReader(script), "--config", cfg, "debug-console", id))
	if strings.Contains(r.stdout, "=yes") {
		t.Errorf("the guest's root created something in a share's own directory:\n%s", r.stdout)
	}
	if n := strings.Count(r.stdout, "create=no") + strings.Count(r.stdout, "mkdir=no"); n != 4 {
		t.Errorf("%d refusals, want 4:\n%s", n, r.stdout)
	}
	kv := keyValues(r.stdout)
	wantKV(t, kv, "rwdir", "written")
	wantKV(t, kv, "rodir", "refused")
	if _, err := os.Stat(filepath.Join(rwDir, "guest")); err != nil {
		t.Errorf("the guest's file is not in the writable directory on the host: %v", err)
	}
	if _, err := os.Stat(filepath.Join(roDir, "guest")); err == nil {
		t.Errorf("the guest created a file in the read-only directory on the host")
	}
	wantKV(t, kv, "rwfile", "written")
	wantKV(t, kv, "rofile", "refused")
	if b, _ := os.ReadFile(ro); string(b) != "start\n" {
		t.Errorf("the read-only file reads %q on the host", b)
	}
	if b, _ := os.ReadFile(rw); string(b) != "start\nguest\n" {
		t.Errorf("the writable file reads %q on the host, want the guest's line", b)
	}
	e.mustOK(e.rt("delete", "--force", id))
}
