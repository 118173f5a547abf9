package shim

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/console"
	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agentclient"
	"github.com/skiff-oci/skiff/agentclient/protocol"
	"github.com/skiff-oci/skiff/internal/tty"
)

// Terminals. The process's real terminal is a pty in the guest; the host
// sees its master as the process's stdin and stdout streams. With
// --console-socket the shim makes a host pty, sends its master to the
// socket as runc does, and relays between its slave (in raw mode: the
// guest's terminal does all line discipline) and the streams. Without
// one, a foreground verb's own stdio are relayed, and the size of the
// caller's terminal followed.

// sizePoll is how often the size of a relayed terminal is checked: the
// shim gets no SIGWINCH for a terminal that is not its controlling one.
const sizePoll = 200 * time.Millisecond

// consolePty makes a host pty, sends its master to the console socket and
// returns the slave, in raw mode.
func consolePty(socket string) (*os.File, error) {
	master, slavePath, err := console.NewPty()
	if err != nil {
		return nil, fmt.Errorf("allocate a pty: %w", err)
	}
	defer master.Close()
	slave, err := os.OpenFile(slavePath, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("open pty %s: %w", slavePath, err)
	}
	if err := tty.MakeRaw(slave); err != nil {
		slave.Close()
		return nil, fmt.Errorf("pty %s: raw mode: %w", slavePath, err)
	}
	if err := sendFd(socket, master.Name(), int(master.Fd())); err != nil {
		slave.Close()
		return nil, err
	}
	return slave, nil
}

// sendFd sends one descriptor over a unix stream socket, with name as the
// message, the way runc hands a console to conmon or containerd.
func sendFd(socket, name string, fd int) error {
	conn, err := net.DialTimeout("unix", socket, 10*time.Second)
	if err != nil {
		return fmt.Errorf("connect to console socket: %w", err)
	}
	defer conn.Close()
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("console socket %s is not a unix socket", socket)
	}
	if _, _, err := uc.WriteMsgUnix([]byte(name), unix.UnixRights(fd), nil); err != nil {
		return fmt.Errorf("send console to %s: %w", socket, err)
	}
	return nil
}

// procIO relays one guest process's stdio streams to host files.
type procIO struct {
	stop    chan struct{} // ends the input copy and the size watch
	once    sync.Once
	outputs *sync.WaitGroup
}

// relayProcess attaches to the stdio streams of process execID ("" for the
// container's own) and relays them: in to its stdin, its stdout to out and
// its stderr to errf (no stderr stream with a terminal). With tty set, the
// size of tty is followed in the guest. Output copies count in outputs.
func (s *shim) relayProcess(ctx context.Context, c *container, execID string, terminal bool, in, out, errf, tty *os.File, outputs *sync.WaitGroup) (*procIO, error) {
	id := c.id()
	streams := []string{protocol.Stdin, protocol.Stdout}
	if !terminal {
		streams = append(streams, protocol.Stderr)
	}
	var conns []net.Conn
	for _, name := range streams {
		conn, err := s.vm.Agent.OpenStdio(ctx, id, execID, name)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, err
		}
		conns = append(conns, conn)
	}
	p := &procIO{stop: make(chan struct{}), outputs: outputs}
	go copyInput(conns[0], in, p.stop)
	dsts := []*os.File{out, errf}
	for i, c := range conns[1:] {
		outputs.Add(1)
		go func() {
			defer outputs.Done()
			io.Copy(&drainWriter{w: dsts[i]}, c)
			c.Close()
		}()
	}
	if terminal && tty != nil {
		go s.watchSize(c, tty, execID, p.stop)
	}
	return p, nil
}

// finish stops the input copy and the size watch; the process has exited.
func (p *procIO) finish() {
	p.once.Do(func() { close(p.stop) })
}

// copyInput copies src to dst until src ends or stop is closed, then
// closes dst (the process sees end of input). It polls instead of blocking
// in read: src may be the caller's terminal, and once the process has
// exited not one more keystroke may be taken from it.
func copyInput(dst io.WriteCloser, src *os.File, stop <-chan struct{}) {
	defer dst.Close()
	if src == nil {
		return
	}
	rc, err := src.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, 32<<10)
	for {
		select {
		case <-stop:
			return
		default:
		}
		var n int
		var rerr error
		ready := false
		rc.Control(func(fd uintptr) {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			k, err := unix.Poll(pfd, 100)
			if err != nil || k == 0 {
				return
			}
			ready = true
			n, rerr = unix.Read(int(fd), buf)
		})
		if !ready || rerr == unix.EINTR || rerr == unix.EAGAIN {
			continue
		}
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
			continue
		}
		return // end of input, or an error such as EIO from a hung-up terminal
	}
}

// drainWriter keeps reading going when the destination fails (its reader
// went away): the guest process must not block on a full stream.
type drainWriter struct {
	w      io.Writer
	failed bool
}

func (d *drainWriter) Write(p []byte) (int, error) {
	if d.w == nil || d.failed {
		return len(p), nil
	}
	if _, err := d.w.Write(p); err != nil {
		d.failed = true
	}
	return len(p), nil
}

// watchSize follows the window size of tty in the guest until stop.
func (s *shim) watchSize(c *container, tty *os.File, execID string, stop <-chan struct{}) {
	rc, err := tty.SyscallConn()
	if err != nil {
		return
	}
	var last unix.Winsize
	t := time.NewTicker(sizePoll)
	defer t.Stop()
	for {
		var ws *unix.Winsize
		var werr error
		rc.Control(func(fd uintptr) { ws, werr = unix.IoctlGetWinsize(int(fd), unix.TIOCGWINSZ) })
		if werr == nil && (ws.Row != last.Row || ws.Col != last.Col) && ws.Row > 0 && ws.Col > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), agentclient.DefaultCallTimeout)
			err := s.vm.Agent.ResizeTerminal(ctx, protocol.ResizeTerminalRequest{ID: c.id(), ExecID: execID, Rows: ws.Row, Cols: ws.Col})
			cancel()
			if err != nil {
				s.log.Debug("resize terminal", "exec", execID, "error", err)
			} else {
				last = *ws
			}
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// attachTerminal relays the container process's terminal: to a new pty
// whose master went to the console socket, or to the shim's own stdio,
// which are the caller's (run in the foreground).
func (s *shim) attachTerminal(ctx context.Context, c *container) error {
	in, out, term := os.Stdin, os.Stdout, (*os.File)(nil)
	if c.consoleSocket != "" {
		slave, err := consolePty(c.consoleSocket)
		if err != nil {
			return err
		}
		// Kept open for the shim's life: the process's terminal is relayed
		// until the shim exits.
		in, out, term = slave, slave, slave
	} else if tty.IsTerminal(os.Stdin) {
		term = os.Stdin
	} else if tty.IsTerminal(os.Stdout) {
		term = os.Stdout
	}
	_, err := s.relayProcess(ctx, c, "", true, in, out, nil, term, &c.outputs)
	return err
}
