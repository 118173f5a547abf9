// Package tty handles terminals on the host: whether a file is one, its
// size, raw mode for the caller's own terminal and for a relaying pty. It
// imports nothing of skiff's.
package tty

import (
	"fmt"
	"os"

	"github.com/containerd/console"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// MakeRaw puts a relaying pty in raw mode, output processing included:
// the guest's terminal already turned "\n" into "\r\n", and the caller
// must get the bytes runc's would.
func MakeRaw(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var terr error
	if err := rc.Control(func(fd uintptr) {
		t, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
		if err != nil {
			terr = err
			return
		}
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB
		t.Cflag |= unix.CS8
		t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
		terr = unix.IoctlSetTermios(int(fd), unix.TCSETS, t)
	}); err != nil {
		return err
	}
	return terr
}

// Size is the window size of a terminal, nil if f is none or has
// no size yet.
func Size(f *os.File) *specs.Box {
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil || ws.Row == 0 || ws.Col == 0 {
		return nil
	}
	return &specs.Box{Height: uint(ws.Row), Width: uint(ws.Col)}
}

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	if f == nil {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Raw puts the caller's terminal in raw mode, as runc does for a
// foreground terminal process: the guest's terminal does the line
// discipline. The returned function restores it.
func Raw(f *os.File) (func(), error) {
	c, err := console.ConsoleFromFile(f)
	if err != nil {
		return nil, fmt.Errorf("terminal: %w", err)
	}
	if err := c.SetRaw(); err != nil {
		return nil, fmt.Errorf("terminal: raw mode: %w", err)
	}
	return func() { c.Reset() }, nil
}
