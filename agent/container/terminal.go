package container

import (
	"errors"
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// setupTerminal gives the process a terminal from the container's own
// devpts (the mount namespace must already be the container's, so that
// `tty` names a /dev/pts entry the process can see): the slave becomes
// stdin, stdout, stderr and the controlling terminal of this session
// leader, and the master goes to the agent over fdConsole.
func setupTerminal(p *specs.Process) error {
	m, err := unix.Open("/dev/pts/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		var err2 error
		if m, err2 = unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0); err2 != nil {
			return fmt.Errorf("terminal: open /dev/pts/ptmx: %w (does the spec mount devpts on /dev/pts?)", err)
		}
	}
	defer unix.Close(m)
	if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("terminal: unlock pty: %w", err)
	}
	n, err := unix.IoctlGetInt(m, unix.TIOCGPTN)
	if err != nil {
		return fmt.Errorf("terminal: pty number: %w", err)
	}
	name := fmt.Sprintf("/dev/pts/%d", n)
	s, err := unix.Open(name, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("terminal: open %s: %w", name, err)
	}
	defer unix.Close(s)
	if cs := p.ConsoleSize; cs != nil && cs.Height > 0 && cs.Width > 0 {
		unix.IoctlSetWinsize(m, unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(cs.Height), Col: uint16(cs.Width)})
	}
	// The user the process runs as must own its terminal to control it.
	if err := unix.Fchown(s, int(p.User.UID), -1); err != nil {
		return fmt.Errorf("terminal: chown %s: %w", name, err)
	}
	if err := unix.Sendmsg(fdConsole, []byte(name), unix.UnixRights(m), nil, 0); err != nil {
		return fmt.Errorf("terminal: send master to the agent: %w", err)
	}
	unix.Close(fdConsole)
	for fd := 0; fd < 3; fd++ {
		if err := unix.Dup3(s, fd, 0); err != nil {
			return fmt.Errorf("terminal: dup onto fd %d: %w", fd, err)
		}
	}
	if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("terminal: make %s the controlling terminal: %w", name, err)
	}
	return nil
}

// consolePair makes the socketpair the child sends its terminal's master
// on: the agent's end and the child's.
func consolePair() (mine, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("console socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "console"), os.NewFile(uintptr(fds[1]), "console-child"), nil
}

// recvConsole receives the terminal master a child sent on sock. The
// child has already reported (or died), so this does not block for long:
// a child gone without sending makes the read return nothing.
func recvConsole(sock *os.File) (*os.File, error) {
	buf := make([]byte, 64)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("receive terminal: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, errors.New("receive terminal: no file descriptor from the container process")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, errors.New("receive terminal: expected one file descriptor")
	}
	// Non-blocking, so that the runtime's poller drives it and Close ends
	// a pending read.
	unix.SetNonblock(fds[0], true)
	return os.NewFile(uintptr(fds[0]), string(buf[:n])), nil
}

// Resize sets the window size of a terminal master; the kernel tells the
// foreground process group with SIGWINCH.
func Resize(master *os.File, rows, cols uint16) error {
	// Not master.Fd(): that would make the file blocking for good.
	rc, err := master.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}); err != nil {
		return err
	}
	return ierr
}
