package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// debug-console: a shell in the guest itself, for operators. Refused
// unless the configuration enables it; enabled, it runs in the guest's own
// root and PID namespace, where PID 1 is the agent (the initramfs's /init),
// not in the container's (whose PID 1 is the container's process). Being
// the guest's root, it also shows what a guest kernel the container took
// over could do to the shares: the container binds files and directories
// for that step.
func TestDebugConsole(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	rw, ro := e.WriteFile("rw/data", "start\n"), e.WriteFile("ro/data", "start\n")
	rwDir, roDir := e.Mkdir("rw-dir"), e.Mkdir("ro-dir")
	b := e.Bundle("c", e2e.Sh("sleep 600"), e2e.Mounts(
		// Targets no other test uses: with a read-only root they are
		// created (as files) in the rootfs the tests share.
		e2e.Bind("/guest-root-rw-file", rw, "bind", "rw"),
		e2e.Bind("/guest-root-ro-file", ro, "bind", "ro"),
		e2e.Bind("/guest-root-rw-dir", rwDir, "rbind", "rw"),
		e2e.Bind("/guest-root-ro-dir", roDir, "rbind", "ro")))
	id := e.ID("c1")
	e.CreateStarted(id, b, "")

	e.Step("refused unless enabled", func(e *e2e.Env) {
		msg := e.MustFail(e.RTIn(strings.NewReader("exit 0\n"), "debug-console", id))
		if !strings.Contains(msg, "debug_console = true") {
			e.T.Errorf("debug-console refused without saying how to enable it: %q", msg)
		}
	})

	cfg := e.WriteFile("debug.toml", "[runtime]\ndebug_console = true\n")
	e.Step("a shell in the guest", func(e *e2e.Env) {
		r := e.RTIn(strings.NewReader("echo $$; cat /proc/1/comm; exit 7\n"), "--config", cfg, "debug-console", id)
		if r.Code != 7 {
			e.T.Errorf("debug-console exited %d, want the shell's status 7: %v", r.Code, r)
		}
		lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
		if len(lines) != 2 || lines[1] != "init" {
			e.T.Errorf("debug-console output %q, want the shell's PID and the guest's PID 1, the agent (comm \"init\")", r.Stdout)
		}
		if len(lines) > 0 && lines[0] == "1" {
			e.T.Errorf("the debug shell is PID 1: %q", r.Stdout)
		}
	})

	e.Step("on a terminal", func(e *e2e.Env) {
		// The shell gets a terminal of the guest, at the caller's size.
		t := e.T
		master, slave := e2e.OpenPty(t)
		e2e.SetSize(t, slave, 27, 83)
		tr := e2e.ReadTerminal(master)
		cmd := e.StartOnTerminal(slave, "--config", cfg, "debug-console", id)
		tr.WaitFor(t, "[skiff guest /]# ", nil)
		master.Write([]byte("tty; stty size; exit 4\n"))
		e2e.WaitExit(t, cmd, 4, "debug-console on a terminal", tr)
		tr.WaitFor(t, "27 83", nil)
		if !strings.Contains(tr.String(), "/dev/pts/") {
			t.Errorf("terminal showed %q, want a /dev/pts path from tty", tr)
		}
	})

	// The shares that carry a sandbox's bind-mounted directories and files
	// are writable for the mounts that are, but even the guest's root
	// cannot create anything beside them on the host, nor write a
	// read-only file or directory.
	e.Step("the guest's root cannot write outside its mounts", func(e *e2e.Env) {
		t := e.T
		// The directories' share is m0, directory K at K/NAME; the
		// files' is m1, file K in K/.
		script := `for s in /run/skiff/shares/m0 /run/skiff/shares/m1 /run/skiff/shares/m0/0; do
touch $s/evil 2>/dev/null && echo create=yes || echo create=no
mkdir $s/evil-dir 2>/dev/null && echo mkdir=yes || echo mkdir=no
done
s=/run/skiff/shares/m0
touch $s/0/rw-dir/guest && echo rwdir=written
touch $s/1/ro-dir/guest 2>/dev/null && echo rodir=written || echo rodir=refused
s=/run/skiff/shares/m1
echo guest >> $s/0/data && echo rwfile=written
echo guest >> $s/1/data 2>/dev/null && echo rofile=written || echo rofile=refused
`
		r := e.MustOK(e.RTIn(strings.NewReader(script), "--config", cfg, "debug-console", id))
		if strings.Contains(r.Stdout, "=yes") {
			t.Errorf("the guest's root created something in a share's own directory:\n%s", r.Stdout)
		}
		if n := strings.Count(r.Stdout, "create=no") + strings.Count(r.Stdout, "mkdir=no"); n != 6 {
			t.Errorf("%d refusals, want 6:\n%s", n, r.Stdout)
		}
		e2e.WantKVs(t, e2e.KeyValues(r.Stdout), map[string]string{
			"rwdir": "written", "rodir": "refused", "rwfile": "written", "rofile": "refused",
		})
		if _, err := os.Stat(filepath.Join(rwDir, "guest")); err != nil {
			t.Errorf("the guest's file is not in the writable directory on the host: %v", err)
		}
		if _, err := os.Stat(filepath.Join(roDir, "guest")); err == nil {
			t.Errorf("the guest created a file in the read-only directory on the host")
		}
		if b, _ := os.ReadFile(ro); string(b) != "start\n" {
			t.Errorf("the read-only file reads %q on the host", b)
		}
		if b, _ := os.ReadFile(rw); string(b) != "start\nguest\n" {
			t.Errorf("the writable file reads %q on the host, want the guest's line", b)
		}
	})

	e.MustOK(e.RT("kill", id, "KILL"))
	e.WaitStatus(id, "stopped")
	e.MustOK(e.RT("delete", id))
}
