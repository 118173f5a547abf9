package tests

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// consoleSocket is what conmon or containerd listens on for a terminal's
// master: a unix stream socket that receives one descriptor.
type consoleSocket struct {
	path   string
	master chan *os.File
	errs   chan error
}

func newConsoleSocket(e *e2e.Env) *consoleSocket {
	e.T.Helper()
	path := e.FreshPath("console.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		e.T.Fatal(err)
	}
	cs := &consoleSocket{path: path, master: make(chan *os.File, 1), errs: make(chan error, 1)}
	go func() {
		defer ln.Close()
		conn, err := ln.AcceptUnix()
		if err != nil {
			cs.errs <- err
			return
		}
		defer conn.Close()
		buf := make([]byte, 4096)
		oob := make([]byte, unix.CmsgSpace(4))
		_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			cs.errs <- err
			return
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			cs.errs <- fmt.Errorf("console socket: want one control message, got %d (%v)", len(msgs), err)
			return
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			cs.errs <- fmt.Errorf("console socket: want one descriptor, got %d (%v)", len(fds), err)
			return
		}
		cs.master <- os.NewFile(uintptr(fds[0]), "console-master")
	}()
	return cs
}

// wait returns the master the runtime sent.
func (cs *consoleSocket) wait(t *testing.T) *os.File {
	t.Helper()
	select {
	case m := <-cs.master:
		t.Cleanup(func() { m.Close() })
		return m
	case err := <-cs.errs:
		t.Fatalf("console socket: %v", err)
	case <-time.After(e2e.CmdTimeout):
		t.Fatalf("no console master arrived on %s within %v", cs.path, e2e.CmdTimeout)
	}
	return nil
}

// checkTerminal drives a process that runs e2e.SizeLoop on master: the
// terminal is a /dev/pts one in the guest, and a resize of the master
// reaches it.
func checkTerminal(t *testing.T, master *os.File) {
	t.Helper()
	tr := e2e.ReadTerminal(master)
	tr.WaitFor(t, "/dev/pts/", nil)
	e2e.SetSize(t, master, 31, 97)
	tr.WaitFor(t, "size=31 97", func() { master.Write([]byte("\n")) })
	e2e.SetSize(t, master, 50, 132)
	tr.WaitFor(t, "size=50 132", func() { master.Write([]byte("\n")) })
	master.Write([]byte("q\n"))
	// The guest's terminal turns "\n" into "\r\n"; nothing on the way may
	// do it again.
	if strings.Contains(tr.String(), "\r\r\n") {
		t.Errorf("terminal output was translated twice (\\r\\r\\n): %q", tr)
	}
}

// startRuntime starts the runtime in the background, with output kept.
func startRuntime(ctx context.Context, e *e2e.Env, args ...string) (*exec.Cmd, *bytes.Buffer) {
	e.T.Helper()
	var out bytes.Buffer
	cmd := e.Command(ctx, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		e.T.Fatal(err)
	}
	return cmd, &out
}

func terminalSpec(s *specs.Spec) { s.Process.Terminal = true }

// create --console-socket, as podman and containerd call it: the master
// arrives on the socket, as from runc, and the guest's terminal follows
// its size.
func TestTerminalConsoleSocket(t *testing.T) {
	e := e2e.NewEnv(t)
	cs := newConsoleSocket(e)
	id := e.ID("t")
	pidFile := filepath.Join(e.Dir, "t.pid")
	r, _ := e.RTFiles("create", "--console-socket", cs.path, "--pid-file", pidFile, "--bundle", e.Bundle("t", e2e.SizeLoop(), terminalSpec), id)
	e.MustOK(r)
	master := cs.wait(t)
	pid := e.State(id).Pid
	e.MustOK(e.RT("start", id))
	checkTerminal(t, master)
	e.WaitStatus(id, "stopped")
	e.WaitGone(pid)
	e.MustOK(e.RT("delete", id))
}

// skiff also takes a console socket in the foreground (runc ignores it
// there), which shows the exit status of a terminal process.
func TestTerminalConsoleSocketForeground(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*e2e.CmdTimeout)
	defer cancel()
	cs := newConsoleSocket(e)
	cmd, out := startRuntime(ctx, e, "run", "--console-socket", cs.path, "--bundle", e.Bundle("t", e2e.SizeLoop(), terminalSpec), e.ID("t"))
	checkTerminal(t, cs.wait(t))
	e2e.WaitExit(t, cmd, 3, "run with a terminal", out)
}

// exec with a terminal into one running container: --detach --tty
// --console-socket as conmon calls it, --tty --console-socket in the
// foreground (skiff only: runc ignores the socket there), --tty on the
// caller's own terminal, and --tty --detach with nowhere for the terminal
// to go refused.
func TestTerminalExec(t *testing.T) {
	e := e2e.NewEnv(t)
	id, _, _ := e.StartExecTarget("te")

	e.Step("detached with a console socket", func(e *e2e.Env) {
		cs := newConsoleSocket(e)
		r, _ := e.RTFiles(append([]string{"exec", "--detach", "--tty", "--console-socket", cs.path, id}, e2e.SizeLoop()...)...)
		e.MustOK(r)
		checkTerminal(e.T, cs.wait(e.T))
	})

	e.Step("foreground with a console socket", func(e *e2e.Env) {
		e2e.SkiffOnly(e.T)
		ctx, cancel := context.WithTimeout(context.Background(), 2*e2e.CmdTimeout)
		defer cancel()
		cs := newConsoleSocket(e)
		cmd, out := startRuntime(ctx, e, append([]string{"exec", "--tty", "--console-socket", cs.path, id}, e2e.SizeLoop()...)...)
		checkTerminal(e.T, cs.wait(e.T))
		e2e.WaitExit(e.T, cmd, 3, "exec --tty", out)
	})

	e.Step("on the caller's terminal", func(e *e2e.Env) {
		master, slave := e2e.OpenPty(e.T)
		e2e.SetSize(e.T, slave, 22, 77)
		tr := e2e.ReadTerminal(master)
		cmd := e.StartOnTerminal(slave, "exec", "--tty", id, "sh", "-c", `tty; echo "size=$(stty size)"; read x; echo "got=$x"; exit 6`)
		tr.WaitFor(e.T, "size=22 77", nil)
		master.Write([]byte("typed\r"))
		e2e.WaitExit(e.T, cmd, 6, "exec --tty on the caller's terminal", tr)
		tr.WaitFor(e.T, "got=typed", nil)
	})

	e.Step("detached without a console socket refused", func(e *e2e.Env) {
		msg := e.MustFail(e.RT("exec", "--tty", "--detach", id, "true"))
		if !strings.Contains(msg, "console socket") {
			e.T.Errorf("exec --tty --detach says %q, want it to mention the console socket", msg)
		}
	})
	e.MustOK(e.RT("delete", "--force", id))
}

// run in the foreground with a terminal and no console socket uses the
// caller's own terminal, in raw mode while it runs and restored after.
func TestTerminalForegroundOwnTerminal(t *testing.T) {
	e := e2e.NewEnv(t)
	master, slave := e2e.OpenPty(t)
	e2e.SetSize(t, slave, 27, 83)
	before, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	tr := e2e.ReadTerminal(master)
	b := e.Bundle("f", e2e.Sh(`tty; echo "size=$(stty size)"; exit 2`), terminalSpec)
	cmd := e.StartOnTerminal(slave, "run", "--bundle", b, e.ID("f"))
	e2e.WaitExit(t, cmd, 2, "run on the caller's terminal", tr)
	tr.WaitFor(t, "size=27 83", nil)
	if !strings.Contains(tr.String(), "/dev/pts/") {
		t.Errorf("terminal showed %q, want a /dev/pts path from tty", tr)
	}
	after, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if after.Lflag != before.Lflag || after.Iflag != before.Iflag || after.Oflag != before.Oflag {
		t.Errorf("the caller's terminal was not restored: lflag %#x iflag %#x oflag %#x, before %#x %#x %#x",
			after.Lflag, after.Iflag, after.Oflag, before.Lflag, before.Iflag, before.Oflag)
	}

	// Without a terminal on stdin, the bytes are relayed as they are
	// (runc refuses: it wants a terminal of its own).
	if !e2e.IsSkiff() {
		return
	}
	r := e.RTIn(strings.NewReader(""), "run", "--bundle", b, e.ID("f2"))
	if r.Code != 2 || !strings.Contains(r.Stdout, "/dev/pts/") {
		t.Errorf("run with a terminal, stdin not a terminal: want exit 2 and a /dev/pts path: %v", r)
	}
}

// A terminal needs somewhere to go: refused as runc refuses it, leaving
// nothing behind. (exec --tty --detach without a socket: TestTerminalExec.)
func TestTerminalRefusals(t *testing.T) {
	e := e2e.NewEnv(t)
	tb := e.Bundle("t", []string{"true"}, terminalSpec)
	for _, args := range [][]string{
		{"create", "--bundle", tb, e.ID("t1")},
		{"run", "--detach", "--bundle", tb, e.ID("t2")},
	} {
		r, _ := e.RTFiles(args...)
		if msg := e.MustFail(r); !strings.Contains(msg, "console socket") {
			t.Errorf("%v says %q, want it to mention the console socket", args, msg)
		}
	}
	nb := e.Bundle("n", []string{"true"})
	r, _ := e.RTFiles("create", "--console-socket", filepath.Join(e.Dir, "nowhere.sock"), "--bundle", nb, e.ID("t3"))
	e.MustFail(r)
	e.AssertNothingFor("")
}
