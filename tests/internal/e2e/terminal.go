package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// OpenPty opens a new pty pair on the host, closed when the test ends.
func OpenPty(t *testing.T) (master, slave *os.File) {
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

// SetSize sets the size of the terminal f.
func SetSize(t *testing.T, f *os.File, rows, cols uint16) {
	t.Helper()
	if err := unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		t.Fatal(err)
	}
}

// TermReader collects what a terminal master reads, in the background.
type TermReader struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// ReadTerminal starts collecting what f reads.
func ReadTerminal(f *os.File) *TermReader {
	tr := &TermReader{}
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

func (tr *TermReader) String() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.buf.String()
}

// WaitFor waits until the terminal showed want; each poll first calls
// poke (if not nil), to prod the process for more output.
func (tr *TermReader) WaitFor(t *testing.T, want string, poke func()) {
	t.Helper()
	deadline := time.Now().Add(StopTimeout)
	for !strings.Contains(tr.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("terminal never showed %q within %v; it showed %q", want, StopTimeout, tr.String())
		}
		if poke != nil {
			poke()
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// SizeLoop is the argv of a process that prints its terminal, then the
// terminal's size for every line it reads, and exits 3 on "q".
func SizeLoop() []string {
	return Sh(`tty; while read x; do [ "$x" = q ] && exit 3; echo "size=$(stty size)"; done`)
}

// StartOnTerminal starts the runtime (with --root) on tty: its stdin,
// stdout and stderr. The process is killed if it outlives CmdTimeout or
// the test.
func (e *Env) StartOnTerminal(tty *os.File, args ...string) *exec.Cmd {
	e.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), CmdTimeout)
	e.T.Cleanup(cancel)
	cmd := e.Command(ctx, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	if err := cmd.Start(); err != nil {
		e.T.Fatal(err)
	}
	return cmd
}

// WaitExit waits for cmd and fails t unless it exited with want; what
// names the command, output (a terminal's, say) is shown on failure.
func WaitExit(t *testing.T, cmd *exec.Cmd, want int, what string, output fmt.Stringer) {
	t.Helper()
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != want {
		t.Errorf("%s exited %d, want %d; it showed %q", what, code, want, output)
	}
}
