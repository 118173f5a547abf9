package container

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ExecArg is os.Args[1] of the re-executed agent when it is to become a
// process exec'd into a container; execEnv guards it as initEnv does.
const (
	ExecArg = "container-exec"
	execEnv = "_SKIFF_CONTAINER_EXEC=1"
)

// The exec child's descriptors beyond stdio: the process spec on fdSpec,
// reports on fdReady, the terminal socket on fdConsole, and the container
// init's namespaces it joins.
const (
	fdMntNS = 7
	fdUTSNS = 8
	fdIPCNS = 9
	fdNetNS = 10
)

// Process is a process exec'd into a container.
type Process struct {
	pid     int
	done    chan struct{}
	status  unix.WaitStatus
	console *os.File
}

// Pid is the guest PID of the process.
func (p *Process) Pid() int { return p.pid }

// Done is closed once the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitStatus blocks until the process exited and returns its status as a
// shell reports it.
func (p *Process) ExitStatus() int {
	<-p.done
	return ExitStatus(p.status)
}

// Console is the master of the process's terminal, nil without one.
func (p *Process) Console() *os.File { return p.console }

// Signal sends sig to the process; an exited process is not an error.
func (p *Process) Signal(sig unix.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := unix.Kill(p.pid, sig); err != nil && err != unix.ESRCH {
		return fmt.Errorf("signal %d to %d: %w", sig, p.pid, err)
	}
	return nil
}

// Exec starts proc inside the container: in the mount, UTS, IPC, network
// and PID namespaces and the cgroup of its init process, with stdio on the given
// files (the caller keeps and closes its own copies). It returns once the
// program has been exec'd, or with the error that kept it from running.
func (c *Container) Exec(proc *specs.Process, stdin, stdout, stderr *os.File, r Reaper) (*Process, error) {
	if proc == nil || len(proc.Args) == 0 || proc.Args[0] == "" {
		return nil, errors.New("process.args must not be empty")
	}
	if proc.Cwd != "" && !strings.HasPrefix(proc.Cwd, "/") {
		return nil, fmt.Errorf("process.cwd %q must be absolute", proc.Cwd)
	}
	select {
	case <-c.done:
		return nil, errors.New("the container's process has exited: cannot exec in a stopped container")
	default:
	}
	specJSON, err := json.Marshal(proc)
	if err != nil {
		return nil, fmt.Errorf("encode process: %w", err)
	}
	// childEnds are what only the child needs once it runs; mine are the
	// agent's ends, closed when Exec returns.
	var childEnds, mine []*os.File
	defer func() {
		for _, f := range append(childEnds, mine...) {
			f.Close()
		}
	}()
	ns := map[string]*os.File{}
	for _, n := range []string{"mnt", "uts", "ipc", "net", "pid"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", c.pid, n))
		if err != nil {
			return nil, fmt.Errorf("open %s namespace of the container: %w", n, err)
		}
		childEnds = append(childEnds, f)
		ns[n] = f
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	childEnds, mine = append(childEnds, specR), append(mine, specW)
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	childEnds, mine = append(childEnds, readyW), append(mine, readyR)
	none := ^uintptr(0) // closed in the child
	consoleFd := none
	var console *os.File
	if proc.Terminal {
		m, child, err := consolePair()
		if err != nil {
			return nil, err
		}
		childEnds, mine = append(childEnds, child), append(mine, m)
		console, consoleFd = m, child.Fd()
	}
	attr := &syscall.ProcAttr{
		Env: []string{execEnv},
		Files: []uintptr{
			stdin.Fd(), stdout.Fd(), stderr.Fd(),
			specR.Fd(), readyW.Fd(), none, consoleFd,
			ns["mnt"].Fd(), ns["uts"].Fd(), ns["ipc"].Fd(), ns["net"].Fd(),
		},
		Sys: &syscall.SysProcAttr{Setsid: true},
	}
	if c.cgroup != "" {
		fd, err := unix.Open(c.cgroup, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err == nil {
			defer unix.Close(fd)
			attr.Sys.UseCgroupFD = true
			attr.Sys.CgroupFD = fd
		}
	}
	pid, statusCh, err := forkIntoPIDNS(ns["pid"], attr, r)
	if err != nil {
		return nil, fmt.Errorf("start exec process: %w", err)
	}
	p := &Process{pid: pid, done: make(chan struct{})}
	go func() {
		p.status = <-statusCh
		close(p.done)
	}()
	// Only the child holds the ends it uses now: EOF on ready means it
	// exec'd (the pipe is close-on-exec) or died.
	for _, f := range childEnds {
		f.Close()
	}
	childEnds = nil
	// The pipe buffer holds a process spec; a child that dies early must
	// not block us all the same.
	specBytes := specJSON
	go func() {
		specW.Write(specBytes)
		specW.Close()
	}()
	mine = mine[1:] // specW belongs to that goroutine now
	fail := func(err error) (*Process, error) {
		unix.Kill(pid, unix.SIGKILL)
		<-p.done
		return nil, err
	}
	line, rerr := bufio.NewReader(readyR).ReadString('\n')
	if rerr != nil && rerr != io.EOF {
		return fail(fmt.Errorf("exec process: %w", rerr))
	}
	if msg, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "error: "); ok {
		return fail(errors.New(msg))
	}
	if console != nil {
		m, err := recvConsole(console)
		if err != nil {
			return fail(err)
		}
		p.console = m
	}
	return p, nil
}

// forkIntoPIDNS starts the exec child inside the PID namespace pidNS: only
// children created after setns(CLONE_NEWPID) enter it, so the fork happens
// on a thread of its own that has joined it. That thread is never unlocked,
// so it dies with the goroutine and no other work ever runs on it.
func forkIntoPIDNS(pidNS *os.File, attr *syscall.ProcAttr, r Reaper) (int, <-chan unix.WaitStatus, error) {
	type result struct {
		pid int
		ch  <-chan unix.WaitStatus
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(int(pidNS.Fd()), unix.CLONE_NEWPID); err != nil {
			res <- result{err: fmt.Errorf("join the container's PID namespace: %w", err)}
			return
		}
		pid, ch, err := r.Track(func() (int, error) {
			return syscall.ForkExec("/proc/self/exe", []string{"skiff-exec", ExecArg}, attr)
		})
		res <- result{pid, ch, err}
	}()
	out := <-res
	return out.pid, out.ch, out.err
}

// IsExecInit reports whether this process is an exec child started by
// Container.Exec.
func IsExecInit() bool { return startedAs(ExecArg, execEnv) }

// ExecInit is the exec child's main: it joins the container's mount, UTS,
// IPC and network namespaces (its PID namespace and cgroup it was born in), sets
// the process up as the container init does, and execs. It never returns;
// every failure, the exec itself included, is reported on fdReady.
func ExecInit() {
	runtime.LockOSThread()
	for _, fd := range []int{fdSpec, fdReady, fdConsole, fdMntNS, fdUTSNS, fdIPCNS, fdNetNS} {
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
	}{{fdMntNS, unix.CLONE_NEWNS, "mount"}, {fdUTSNS, unix.CLONE_NEWUTS, "UTS"}, {fdIPCNS, unix.CLONE_NEWIPC, "IPC"}, {fdNetNS, unix.CLONE_NEWNET, "network"}} {
		if err := unix.Setns(n.fd, n.flag); err != nil {
			return fmt.Errorf("join the container's %s namespace: %w", n.name, err)
		}
		unix.Close(n.fd)
	}
	return nil
}
