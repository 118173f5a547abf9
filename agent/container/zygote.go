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
// namespaces for the container's descriptors; on receiving them it enters a
// new mount namespace and goes on exactly as a freshly started container
// init. Re-executing the agent is the largest part of creating a container
// under TCG (~60 ms of its ~170 ms), and the zygote takes it off the path.
//
// The mount namespace is made when the container comes, not at fork: the
// shares the container needs are mounted by the agent after the zygote was
// born, and a copy made then sees them.
const (
	ZygoteArg = "container-zygote"
	zygoteEnv = "_SKIFF_CONTAINER_ZYGOTE=1"
	// fdZygote is the zygote's end of its socket to the agent.
	fdZygote = 3
	// zygoteWaiting is what the zygote writes once it waits for work.
	zygoteWaiting = 'w'
	// zygoteCgroup names the zygote's cgroup; no container ID starts
	// with '-'.
	zygoteCgroup = "-zygote"
)

// IsZygote reports whether this process is a zygote started by StartZygote.
func IsZygote() bool { return startedAs(ZygoteArg, zygoteEnv) }

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

// ZygoteMain is the zygote's main: it never returns. It must run on the
// process's main thread (locked in an init function), because the mount
// namespace it enters is the thread's, and /proc/PID/ns/mnt shows the main
// thread's.
func ZygoteMain() {
	warmDecoder()
	if _, err := unix.Write(fdZygote, []byte{zygoteWaiting}); err != nil {
		os.Exit(1)
	}
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(8*4))
	var n, oobn int
	var err error
	for {
		n, oobn, _, _, err = unix.Recvmsg(fdZygote, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil || n == 0 {
		os.Exit(0) // the agent went away or discarded us
	}
	fds, err := receivedFDs(oob[:oobn])
	if err != nil || len(fds) < fdStart+1 {
		os.Exit(1)
	}
	// Received descriptors may sit where others must go: move them all
	// out of the way first, then into place.
	high := make([]int, len(fds))
	for i, fd := range fds {
		if high[i], err = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 100); err != nil {
			os.Exit(1)
		}
		unix.Close(fd)
	}
	for i, fd := range high {
		if err := unix.Dup3(fd, i, 0); err != nil {
			os.Exit(1)
		}
		unix.Close(fd)
	}
	// CLONE_NEWNS implies CLONE_FS: this thread stops sharing its root
	// and working directory with the runtime's other threads, so the
	// pivot that follows is this thread's alone, and so is the exec.
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		unix.Write(fdReady, []byte(fmt.Sprintf("error: zygote: new mount namespace: %v\n", err)))
		os.Exit(1)
	}
	Init()
}

func receivedFDs(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		f, err := unix.ParseUnixRights(&m)
		if err != nil {
			return nil, err
		}
		fds = append(fds, f...)
	}
	if len(fds) == 0 {
		return nil, errors.New("no descriptors")
	}
	return fds, nil
}
