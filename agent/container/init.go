package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The child side: what the agent binary does when it was re-executed as
// a container init, a zygote or an exec'd process (see contract.go). The
// parent side is create.go, exec.go and zygote.go.

// readyPipe is the one *os.File for fdReady (a second one would close the
// descriptor when collected).
var readyPipe *os.File

// warnf tells the agent about something setup skipped; it goes on the
// ready pipe, never on the container's own stderr.
func warnf(format string, args ...any) {
	fmt.Fprintf(readyPipe, "warning: %s\n", strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " "))
}

// IsInit reports whether this process is a container init started by New.
func IsInit() bool { return startedAs(InitArg, initEnv) }

// IsZygote reports whether this process is a zygote started by StartZygote.
func IsZygote() bool { return startedAs(ZygoteArg, zygoteEnv) }

// IsExecInit reports whether this process is an exec child started by
// Container.Exec.
func IsExecInit() bool { return startedAs(ExecArg, execEnv) }

// startedAs tells whether the agent re-executed itself as this process:
// both the argument and the environment marker must be there, so that a
// stray argument alone never turns the guest's PID 1 into something else.
func startedAs(arg, env string) bool {
	if len(os.Args) < 2 || os.Args[1] != arg {
		return false
	}
	for _, e := range os.Environ() {
		if e == env {
			return true
		}
	}
	return false
}

// failSetup reports err to the agent on the ready pipe and exits.
func failSetup(err error) {
	fmt.Fprintf(readyPipe, "error: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
	os.Exit(1)
}

// readSetup decodes the JSON document the agent wrote on fdSpec (what it
// is, for errors) into v, or fails the setup.
func readSetup(v any, what string) {
	b, err := io.ReadAll(os.NewFile(fdSpec, what))
	if err != nil {
		failSetup(fmt.Errorf("read %s: %w", what, err))
	}
	if err := json.Unmarshal(b, v); err != nil {
		failSetup(fmt.Errorf("decode %s: %w", what, err))
	}
}

// Init is the container init's main: it never returns. Setup errors go back
// to the agent on the ready pipe; an exec failure after Start goes to the
// process's stderr with exit status 127.
func Init() {
	// Credentials, capabilities and no_new_privs are set per thread below
	// and must be those of the thread that calls execve.
	runtime.LockOSThread()
	for _, fd := range []int{fdSpec, fdReady, fdStart, fdConsole} {
		unix.CloseOnExec(fd)
	}
	readyPipe = os.NewFile(fdReady, "ready")
	var spec specs.Spec
	readSetup(&spec, "spec")
	path, env, err := setup(&spec)
	if err != nil {
		failSetup(err)
	}
	if _, err := readyPipe.Write([]byte("ready\n")); err != nil {
		os.Exit(1)
	}

	var one [1]byte
	if n, _ := os.NewFile(fdStart, "start").Read(one[:]); n != 1 {
		os.Exit(1) // the agent gave up on this container
	}
	err = unix.Exec(path, spec.Process.Args, env)
	fmt.Fprintf(os.Stderr, "skiff: exec %s: %v\n", spec.Process.Args[0], err)
	os.Exit(127)
}

// ZygoteMain is the zygote's main: it never returns. It must run on the
// process's main thread (locked in an init function), because the mount
// namespace it enters is the thread's, and /proc/PID/ns/mnt shows the main
// thread's.
func ZygoteMain() {
	// What the zygote does before it waits uses raw system calls only:
	// an os.File would start the Go runtime's poller, whose descriptors
	// the container's overwrite below.
	warmDecoder()
	lastCap()
	premakeNetwork()
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

// ExecInit is the exec child's main: it joins the container's mount, UTS,
// IPC, network and cgroup namespaces (its PID namespace and cgroup it was
// born in), sets the process up as the container init does, and execs.
// It never returns; every failure, the exec itself included, is reported
// on fdReady.
func ExecInit() {
	runtime.LockOSThread()
	for _, fd := range []int{fdSpec, fdReady, fdConsole, fdMntNS, fdUTSNS, fdIPCNS, fdNetNS, fdCgroupNS} {
		unix.CloseOnExec(fd)
	}
	readyPipe = os.NewFile(fdReady, "ready")
	var p specs.Process
	readSetup(&p, "process")
	if err := joinNamespaces(); err != nil {
		failSetup(err)
	}
	path, env, err := prepareProcess(&p)
	if err != nil {
		failSetup(err)
	}
	err = unix.Exec(path, p.Args, env)
	failSetup(fmt.Errorf("exec %s: %w", p.Args[0], err))
}

// joinNamespaces moves this thread into the container's namespaces. A
// mount namespace can only be joined by a thread that shares its
// filesystem context with no other, hence the unshare first. Joining it
// sets root and cwd to the container's root, so no chroot is needed.
func joinNamespaces() error {
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare filesystem context: %w", err)
	}
	for _, n := range []struct {
		fd   int
		flag int
		name string
	}{{fdMntNS, unix.CLONE_NEWNS, "mount"}, {fdUTSNS, unix.CLONE_NEWUTS, "UTS"}, {fdIPCNS, unix.CLONE_NEWIPC, "IPC"}, {fdNetNS, unix.CLONE_NEWNET, "network"}, {fdCgroupNS, unix.CLONE_NEWCGROUP, "cgroup"}} {
		if err := unix.Setns(n.fd, n.flag); err != nil {
			return fmt.Errorf("join the container's %s namespace: %w", n.name, err)
		}
		unix.Close(n.fd)
	}
	return nil
}
