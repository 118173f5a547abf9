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
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// consoleSocket is what conmon or containerd listens on for a terminal's
// master: a unix stream socket that receives one descriptor.
type consoleSocket struct {
	path   string
	master chan *os.File
	errs   chan error
}

func (e *env) consoleSocket() *consoleSocket {
	e.t.Helper()
	e.n++
	path := filepath.Join(e.dir, fmt.Sprintf("console-%d.sock", e.n))
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		e.t.Fatal(err)
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
	case <-time.After(cmdTimeout):
		t.Fatalf("no console master arrived on %s within %v", cs.path, cmdTimeout)
	}
	return nil
}

// termReader collects what a terminal master reads, in the background.
type termReader struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func readTerminal(f *os.File) *termReader {
	tr := &termReader{}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := f.Read(b)
			tr.mu.Lock()
			tr.buf.Write(b[:n])
			tr.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return tr
}

func (tr *termReader) String() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.buf.String()
}

// waitFor waits until the terminal showed want; each poll first calls
// poke (if not nil), to prod the process for more output.
func (tr *termReader) waitFor(t *testing.T, want string, poke func()) {
	t.Helper()
	deadline := time.Now().Add(stopTimeout)
	for !strings.Contains(tr.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("terminal never showed %q within %v; it showed %q", want, stopTimeout, tr.String())
		}
		if poke != nil {
			poke()
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// sizeLoop prints its terminal, then the terminal's size for every line
// it reads, and exits 3 on "q".
var sizeLoop = sh(`tty; while read x; do [ "$x" = q ] && exit 3; echo "size=$(stty size)"; done`)

// checkTerminal drives a process that runs sizeLoop on master: the
// terminal is a /dev/pts one in the guest, and a resize of the master
// reaches it.
func checkTerminal(t *testing.T, master *os.File) {
	t.Helper()
	tr := readTerminal(master)
	tr.waitFor(t, "/dev/pts/", nil)
	if err := unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 31, Col: 97}); err != nil {
		t.Fatal(err)
	}
	tr.waitFor(t, "size=31 97", func() { master.Write([]byte("\n")) })
	if err := unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 50, Col: 132}); err != nil {
		t.Fatal(err)
	}
	tr.waitFor(t, "size=50 132", func() { master.Write([]byte("\n")) })
	master.Write([]byte("q\n"))
	// The guest's terminal turns "\n" into "\r\n"; nothing on the way may
	// do it again.
	if strings.Contains(tr.String(), "\r\r\n") {
		t.Errorf("terminal output was translated twice (\\r\\r\\n): %q", tr)
	}
}

// startRuntime starts the runtime in the background, with output kept.
func (e *env) startRuntime(ctx context.Context, args ...string) (*exec.Cmd, *bytes.Buffer) {
	e.t.Helper()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, runtimeBin, append([]string{"--root", e.root}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	return cmd, &out
}

func terminalSpec(s *specs.Spec) { s.Process.Terminal = true }

// create --console-socket, as podman and containerd call it: the master
// arrives on the socket, as from runc, and the guest's terminal follows
// its size.
func TestTerminalConsoleSocket(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cs := e.consoleSocket()
	id := e.id("t")
	pidFile := filepath.Join(e.dir, "t.pid")
	r, _ := e.rtFiles("create", "--console-socket", cs.path, "--pid-file", pidFile, "--bundle", e.bundle("t", sizeLoop, terminalSpec), id)
	e.mustOK(r)
	master := cs.wait(t)
	pid := e.state(id).Pid
	e.mustOK(e.rt("start", id))
	checkTerminal(t, master)
	e.waitStatus(id, "stopped")
	e.waitGone(pid)
	e.mustOK(e.rt("delete", id))
}

// skiff also takes a console socket in the foreground (runc ignores it
// there), which shows the exit status of a terminal process.
func TestTerminalConsoleSocketForeground(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*cmdTimeout)
	defer cancel()
	cs := e.consoleSocket()
	cmd, out := e.startRuntime(ctx, "run", "--console-socket", cs.path, "--bundle", e.bundle("t", sizeLoop, terminalSpec), e.id("t"))
	checkTerminal(t, cs.wait(t))
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Errorf("run with a terminal exited %d, want 3; output %q", code, out)
	}

	id, _, _ := e.startExecTarget("te")
	cs = e.consoleSocket()
	cmd, out = e.startRuntime(ctx, append([]string{"exec", "--tty", "--console-socket", cs.path, id}, sizeLoop...)...)
	checkTerminal(t, cs.wait(t))
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Errorf("exec --tty exited %d, want 3; output %q", code, out)
	}
	e.mustOK(e.rt("delete", "--force", id))
}

// exec --detach --tty --console-socket into a running container, as conmon
// calls it; and exec --tty in the foreground on the caller's terminal.
func TestTerminalExec(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id, _, _ := e.startExecTarget("te")
	cs := e.consoleSocket()
	r, _ := e.rtFiles(append([]string{"exec", "--detach", "--tty", "--console-socket", cs.path, id}, sizeLoop...)...)
	e.mustOK(r)
	checkTerminal(t, cs.wait(t))

	master, slave := openPty(t)
	if err := unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 22, Col: 77}); err != nil {
		t.Fatal(err)
	}
	tr := readTerminal(master)
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, runtimeBin, "--root", e.root, "exec", "--tty", id, "sh", "-c", `tty; echo "size=$(stty size)"; read x; echo "got=$x"; exit 6`)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tr.waitFor(t, "size=22 77", nil)
	master.Write([]byte("typed\r"))
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 6 {
		t.Errorf("exec --tty on the caller's terminal exited %d, want 6; terminal showed %q", code, tr)
	}
	tr.waitFor(t, "got=typed", nil)
	e.mustOK(e.rt("delete", "--force", id))
}

// run in the foreground with a terminal and no console socket uses the
// caller's own terminal, in raw mode while it runs and restored after.
func TestTerminalForegroundOwnTerminal(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	master, slave := openPty(t)
	if err := unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 27, Col: 83}); err != nil {
		t.Fatal(err)
	}
	before, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	tr := readTerminal(master)
	b := e.bundle("f", sh(`tty; echo "size=$(stty size)"; exit 2`), terminalSpec)
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, runtimeBin, "--root", e.root, "run", "--bundle", b, e.id("f"))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != 2 {
		t.Errorf("run on the caller's terminal exited %d, want 2; terminal showed %q", code, tr)
	}
	tr.waitFor(t, "size=27 83", nil)
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
	if !isSkiff {
		return
	}
	r := e.rtIn(strings.NewReader(""), "run", "--bundle", b, e.id("f2"))
	if r.code != 2 || !strings.Contains(r.stdout, "/dev/pts/") {
		t.Errorf("run with a terminal, stdin not a terminal: want exit 2 and a /dev/pts path: %v", r)
	}
}

// A terminal needs somewhere to go: refused as runc refuses it, leaving
// nothing behind.
func TestTerminalRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tb := e.bundle("t", []string{"true"}, terminalSpec)
	for _, args := range [][]string{
		{"create", "--bundle", tb, e.id("t1")},
		{"run", "--detach", "--bundle", tb, e.id("t2")},
	} {
		r, _ := e.rtFiles(args...)
		if msg := e.mustFail(r); !strings.Contains(msg, "console socket") {
			t.Errorf("%v says %q, want it to mention the console socket", args, msg)
		}
	}
	nb := e.bundle("n", []string{"true"})
	r, _ := e.rtFiles("create", "--console-socket", filepath.Join(e.dir, "nowhere.sock"), "--bundle", nb, e.id("t3"))
	e.mustFail(r)
	e.assertNothingFor("")

	id, _, _ := e.startExecTarget("tx")
	msg := e.mustFail(e.rt("exec", "--tty", "--detach", id, "true"))
	if !strings.Contains(msg, "console socket") {
		t.Errorf("exec --tty --detach says %q, want it to mention the console socket", msg)
	}
	e.mustOK(e.rt("delete", "--force", id))
}

// openPty opens a new pty pair on the host.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}
