package container

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// A zygote is a container init started before any container is asked for:
// the agent re-executes itself at boot, and the child's Go runtime comes up
// while the guest has nothing else to do (or, in a VM template, once for
// every sandbox restored from it). It waits in new PID, UTS and IPC
// namespaces, and a network namespace with loopback up (network.go), for
// the container's descriptors; on receiving them it enters a
// new mount namespace and goes on exactly as a freshly started container
// init. Re-executing the agent is the largest part of creating a container
// under TCG (~60 ms of its ~170 ms), and the zygote takes it off the path.
//
// The mount namespace is made when the container comes, not at fork: the
// shares the container needs are mounted by the agent after the zygote was
// born, and a copy made then sees them.

// Zygote is the agent's handle on a waiting zygote.
type Zygote struct {
	pid    int
	status <-chan unix.WaitStatus
	sock   *os.File // SOCK_SEQPACKET, the agent's end
	cgroup string   // its own, until adoptCgroup
	ready  bool
	spent  bool
}

// StartZygote starts a zygote. It does not wait for it: see WaitReady.
func StartZygote(r Reaper) (*Zygote, error) {
	mine, theirs, err := zygoteSocket()
	if err != nil {
		return nil, err
	}
	defer theirs.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		mine.Close()
		return nil, err
	}
	defer null.Close()
	attr := &syscall.ProcAttr{
		Env:   []string{zygoteEnv},
		Files: []uintptr{null.Fd(), null.Fd(), null.Fd(), theirs.Fd()},
		// The PID namespace must exist at fork: only a child of the
		// unsharing process would enter one made later.
		Sys: &syscall.SysProcAttr{Setsid: true, Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC},
	}
	// Born in a cgroup of its own, not the agent's: it is moved into the
	// container's when it becomes one (adoptCgroup).
	cgroup, cgfd := makeCgroup(zygoteCgroup)
	if cgfd >= 0 {
		defer unix.Close(cgfd)
		attr.Sys.UseCgroupFD = true
		attr.Sys.CgroupFD = cgfd
	}
	pid, status, err := r.Track(func() (int, error) {
		return syscall.ForkExec("/proc/self/exe", []string{"skiff-init", ZygoteArg}, attr)
	})
	if err != nil {
		mine.Close()
		if cgroup != "" {
			os.Remove(cgroup)
		}
		return nil, fmt.Errorf("start zygote: %w", err)
	}
	return &Zygote{pid: pid, status: status, sock: mine, cgroup: cgroup}, nil
}

// zygoteSocket is the agent's and the zygote's ends of their socket. The
// agent's is non-blocking, so that Go's poller drives it and WaitReady's
// deadline holds; the zygote's stays blocking.
func zygoteSocket() (mine, theirs *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("zygote socket: %w", err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("zygote socket: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "zygote"), os.NewFile(uintptr(fds[1]), "zygote"), nil
}

// WaitReady returns once the zygote waits for work, or an error (and the
// zygote discarded) if it did not within d. It is not safe for concurrent
// use, nor is the rest of Zygote: its owner serialises.
func (z *Zygote) WaitReady(d time.Duration) error {
	if z.ready {
		return nil
	}
	if z.spent {
		return errors.New("zygote already spent")
	}
	z.sock.SetReadDeadline(time.Now().Add(d))
	defer z.sock.SetReadDeadline(time.Time{})
	var b [1]byte
	n, err := z.sock.Read(b[:])
	if err == nil && (n != 1 || b[0] != zygoteWaiting) {
		err = fmt.Errorf("zygote said %q", b[:n])
	}
	if err != nil {
		z.Discard()
		return fmt.Errorf("zygote not ready: %w", err)
	}
	z.ready = true
	return nil
}

// Discard kills an unused zygote.
func (z *Zygote) Discard() {
	if z == nil || z.spent {
		return
	}
	z.spent = true
	z.sock.Close()
	unix.Kill(z.pid, unix.SIGKILL)
}

// Spent reports whether the zygote was used or discarded.
func (z *Zygote) Spent() bool { return z == nil || z.spent }

// usableFor reports whether the zygote can become the container of spec:
// it always has a PID namespace, which the spec must ask for.
func (z *Zygote) usableFor(spec *specs.Spec) bool {
	return z != nil && !z.spent && hasNamespace(spec, specs.PIDNamespace)
}

// adoptCgroup moves the zygote into the container's cgroup, made like any
// container's, and returns it ("" without cgroup2 in the guest).
// cgroup2 refuses to rename a cgroup, so the zygote is born in one of its
// own and moved; the move waits for an RCU grace period unless cgroup2 is
// mounted with favordynmods, as the agent does.
func (z *Zygote) adoptCgroup(id string) (string, error) {
	dir, fd := makeCgroup(id)
	if fd < 0 {
		return "", nil
	}
	unix.Close(fd)
	if err := os.WriteFile(dir+"/cgroup.procs", []byte(strconv.Itoa(z.pid)), 0); err != nil {
		os.Remove(dir)
		return "", fmt.Errorf("move zygote into %s: %w", dir, err)
	}
	if z.cgroup != "" {
		os.Remove(z.cgroup)
		z.cgroup = ""
	}
	return dir, nil
}

// hand gives the zygote its descriptors (the child's fds 0, 1, ... in
// order). An error means the zygote is gone and was not given anything.
func (z *Zygote) hand(files []uintptr) (int, <-chan unix.WaitStatus, error) {
	z.spent = true
	defer z.sock.Close()
	fail := func(err error) (int, <-chan unix.WaitStatus, error) {
		unix.Kill(z.pid, unix.SIGKILL)
		return 0, nil, err
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f)
	}
	rc, err := z.sock.SyscallConn()
	if err != nil {
		return fail(err)
	}
	var serr error
	if err := rc.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), []byte{'g'}, unix.UnixRights(fds...), nil, 0)
		return serr != unix.EAGAIN
	}); err != nil {
		return fail(err)
	}
	if serr != nil {
		return fail(fmt.Errorf("hand descriptors to zygote: %w", serr))
	}
	return z.pid, z.status, nil
}
