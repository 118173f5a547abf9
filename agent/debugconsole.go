package agent

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agent/container"
	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// debugShell is busybox's shell, put in the initramfs by guest/build.sh
// and kept reachable by keepGuestBin.
const debugShell = "/bin/sh"

// validTerm is a TERM value the shell may get: a plain name.
func validTerm(s string) bool { return validName(s, 64, false) }

// debugConsole starts a shell in the guest's own root and namespaces, as
// root: what an operator needs to look at the guest a container runs in.
// The host decides whether anyone may call it (runtime.debug_console).
func (a *Agent) debugConsole(req *protocol.DebugConsoleRequest) (*protocol.DebugConsoleResponse, error) {
	if !validID(req.ExecID) {
		return nil, fmt.Errorf("invalid exec ID %q", req.ExecID)
	}
	term := "dumb"
	if req.Term != "" {
		if !validTerm(req.Term) {
			return nil, fmt.Errorf("invalid TERM %q", req.Term)
		}
		term = req.Term
	}
	c, err := a.lookup(req.ID)
	if err != nil {
		return nil, err
	}
	p, err := a.startExec(c, req.ExecID, func() (*proc, error) { return a.startDebugShell(req, term) })
	if err != nil {
		return nil, fmt.Errorf("container %s: debug console: %w", req.ID, err)
	}
	a.log.debugf("debug console %s started, pid %d", req.ExecID, p.pid)
	return &protocol.DebugConsoleResponse{PID: p.pid}, nil
}

func (a *Agent) startDebugShell(req *protocol.DebugConsoleRequest, term string) (*proc, error) {
	if _, err := os.Stat(debugShell); err != nil {
		return nil, fmt.Errorf("no shell in the guest (%w): the guest image was built without busybox; rebuild it with guest/build.sh", err)
	}
	return startProc(func(child [3]*os.File) (*proc, error) {
		return a.forkDebugShell(req, term, child)
	})
}

// forkDebugShell starts the shell on the child's stdio ends, or on a new
// terminal when the request asks for one.
func (a *Agent) forkDebugShell(req *protocol.DebugConsoleRequest, term string, child [3]*os.File) (*proc, error) {
	files := []uintptr{child[0].Fd(), child[1].Fd(), child[2].Fd()}
	sys := &syscall.SysProcAttr{Setsid: true}
	var master *os.File
	if req.Terminal {
		m, slave, err := openPty(req.Rows, req.Cols)
		if err != nil {
			return nil, err
		}
		defer slave.Close()
		master = m
		files = []uintptr{slave.Fd(), slave.Fd(), slave.Fd()}
		sys.Setctty, sys.Ctty = true, 0
	}
	attr := &syscall.ProcAttr{
		Dir:   "/",
		Env:   []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin", "HOME=/", "TERM=" + term, `PS1=[skiff guest \w]# `},
		Files: files,
		Sys:   sys,
	}
	pid, statusCh, err := a.reaper.Track(func() (int, error) {
		return syscall.ForkExec(debugShell, []string{"sh"}, attr)
	})
	if err != nil {
		if master != nil {
			master.Close()
		}
		return nil, fmt.Errorf("start %s: %w", debugShell, err)
	}
	sh := container.Watch(pid, statusCh)
	return &proc{pid: pid, console: master, done: sh.Done(), status: sh.ExitStatus, signal: sh.Signal}, nil
}

// openPty makes a pty of the guest's devpts: the master (non-blocking, so
// that the runtime's poller drives it) and the slave.
func openPty(rows, cols uint16) (master, slave *os.File, err error) {
	m, err := unix.Open("/dev/pts/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		if m, err = unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0); err != nil {
			return nil, nil, fmt.Errorf("open /dev/ptmx: %w", err)
		}
	}
	fail := func(err error) (*os.File, *os.File, error) {
		unix.Close(m)
		return nil, nil, err
	}
	if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
		return fail(fmt.Errorf("unlock pty: %w", err))
	}
	n, err := unix.IoctlGetInt(m, unix.TIOCGPTN)
	if err != nil {
		return fail(fmt.Errorf("pty number: %w", err))
	}
	name := fmt.Sprintf("/dev/pts/%d", n)
	s, err := unix.Open(name, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail(fmt.Errorf("open %s: %w", name, err))
	}
	if rows > 0 && cols > 0 {
		unix.IoctlSetWinsize(m, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}
	return os.NewFile(uintptr(m), "ptmx"), os.NewFile(uintptr(s), name), nil
}

// keepGuestBin bind-mounts the initramfs's /bin (busybox, for the debug
// console) read-only into the root the agent moves to: the initramfs
// itself becomes unreachable. A guest without /bin loses nothing but the
// debug console, so failures are only reported on the console.
func keepGuestBin(newRoot string) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		return
	}
	target := newRoot + "/bin"
	err := os.Mkdir(target, 0o755)
	if err == nil {
		err = unix.Mount("/bin", target, "", unix.MS_BIND, "")
	}
	if err == nil {
		err = unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "skiff-agent: error keep /bin for the debug console: %v\n", err)
	}
}
