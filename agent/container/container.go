// Package container creates one container process inside the guest, the way
// a runc-like runtime does on a host: the agent re-executes itself in new
// mount, PID, UTS and IPC namespaces; that child ("container init") builds
// the container's root filesystem from the OCI spec, pivots into it, drops
// to the spec's user and stops before the user program's first instruction,
// waiting for Start.
//
// The package must not reap processes itself: the agent is PID 1 and owns
// wait4 through the Reaper it passes in. It does not speak the agent
// protocol and does not touch the agent channel.
package container

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"strings"
	"sync"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// InitArg is os.Args[1] of the re-executed agent when it is to become a
// container init; initEnv is set in its environment too, so that a stray
// kernel command-line word cannot turn the guest's PID 1 into one.
const (
	InitArg = "container-init"
	initEnv = "_SKIFF_CONTAINER_INIT=1"
)

// Child file descriptors beyond stdio, in this order.
const (
	fdSpec  = 3 // the spec, as JSON, read to EOF
	fdReady = 4 // "ready\n" or "error: ...\n" back to the agent
	fdStart = 5 // one byte from the agent means "exec now"
)

// Reaper is the agent's single wait4 loop. Track must call start with the
// reaper's dispatch lock held and register the returned PID before the
// lock is released, so that an exit status that arrives at once is not lost.
// The channel receives the process's wait status exactly once.
type Reaper interface {
	Track(start func() (int, error)) (pid int, status <-chan unix.WaitStatus, err error)
}

// Container is one created container: its init process is alive and
// stopped before the user program until Start.
type Container struct {
	id    string
	pid   int
	pidNS string // readlink of /proc/<pid>/ns/pid, to find all its processes
	// cgroup is the container's own cgroup v2 directory in the guest, ""
	// when the guest has no cgroup2. It finds every process of the
	// container even when the spec asks for no PID namespace.
	cgroup string

	mu      sync.Mutex
	startW  *os.File
	started bool

	done     chan struct{}
	status   unix.WaitStatus
	warnings []string
	console  *os.File // the terminal's master (process.terminal=true)
}

// New creates the container's process with stdio on the given files (the
// child's ends; the caller keeps and closes its own copies) and returns once
// the process is ready to exec the user program. A setup failure is returned
// as an error and leaves no process behind. The process is z when z (which
// may be nil) can be it; z is spent then.
//
// ownNet gives the container a network namespace of its own, loopback
// only, instead of the guest's: for a sandbox without networking in a
// guest that has NICs anyway (a VM template's NIC slot).
func New(id string, spec *specs.Spec, ownNet bool, stdin, stdout, stderr *os.File, r Reaper, z *Zygote) (*Container, error) {
	if err := Validate(spec); err != nil {
		return nil, err
	}
	specJSON, err := json.Marshal(forInit(spec, ownNet))
	if err != nil {
		return nil, fmt.Errorf("encode spec: %w", err)
	}

	var pipes [3][2]*os.File // spec, ready, start: [read, write]
	defer func() {
		for _, p := range pipes {
			for _, f := range p {
				if f != nil {
					f.Close()
				}
			}
		}
	}()
	for i := range pipes {
		rd, wr, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("pipe: %w", err)
		}
		pipes[i] = [2]*os.File{rd, wr}
	}
	files := []uintptr{
		stdin.Fd(), stdout.Fd(), stderr.Fd(),
		pipes[0][0].Fd(), pipes[1][1].Fd(), pipes[2][0].Fd(),
	}
	var console *os.File
	if spec.Process.Terminal {
		mine, child, err := consolePair()
		if err != nil {
			return nil, err
		}
		defer mine.Close()
		defer child.Close()
		console = mine
		files = append(files, child.Fd())
	}
	// Mount, UTS and IPC namespaces always: the container must not touch
	// the agent's mounts or the guest's name. A PID namespace as the spec
	// says, as runc does: without one the process is not an init process.
	flags := uintptr(syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC)
	if hasNamespace(spec, specs.PIDNamespace) {
		flags |= syscall.CLONE_NEWPID
	}
	attr := &syscall.ProcAttr{
		Env:   []string{initEnv},
		Files: files,
		Sys:   &syscall.SysProcAttr{Setsid: true, Cloneflags: flags},
	}
	var (
		cgroup    string
		warnings  []string
		useZygote = z.usableFor(spec)
	)
	notZygote := func(err error) {
		warnings = append(warnings, fmt.Sprintf("warning: %v; starting a container init", err))
		z.Discard()
		useZygote = false
	}
	if useZygote {
		var err error
		if cgroup, err = z.adoptCgroup(id); err != nil {
			notZygote(err)
		}
	}
	if !useZygote {
		cgroup = intoCgroup(id, attr)
	}
	if spec.Linux != nil {
		if err := applyResources(cgroup, spec.Linux.Resources); err != nil {
			if attr.Sys.UseCgroupFD {
				unix.Close(attr.Sys.CgroupFD)
			}
			z.Discard()
			os.Remove(cgroup)
			return nil, fmt.Errorf("resources: %w", err)
		}
	}
	var (
		pid      int
		statusCh <-chan unix.WaitStatus
	)
	if useZygote {
		if pid, statusCh, err = z.hand(files); err != nil {
			notZygote(err)
			if cgroup != "" {
				intoCgroup(id, attr) // the one the zygote was moved to
			}
		}
	}
	if !useZygote {
		pid, statusCh, err = r.Track(func() (int, error) {
			return syscall.ForkExec("/proc/self/exe", []string{"skiff-init", InitArg}, attr)
		})
		if attr.Sys.UseCgroupFD {
			unix.Close(attr.Sys.CgroupFD)
		}
		if err != nil {
			os.Remove(cgroup)
			return nil, fmt.Errorf("start container init: %w", err)
		}
	}
	c := &Container{id: id, pid: pid, cgroup: cgroup, done: make(chan struct{}), warnings: warnings}
	go func() {
		c.status = <-statusCh
		close(c.done)
	}()
	// The child holds its ends now; closing ours makes EOF mean "child gone".
	for _, f := range []*os.File{pipes[0][0], pipes[1][1], pipes[2][0]} {
		f.Close()
	}
	pipes[0][0], pipes[1][1], pipes[2][0] = nil, nil, nil

	fail := func(err error) (*Container, error) {
		unix.Kill(pid, unix.SIGKILL)
		<-c.done
		return nil, err
	}
	// The pipe buffer holds a typical spec; write in the background anyway
	// so that a child that dies early cannot block us.
	specW := pipes[0][1]
	pipes[0][1] = nil
	go func() {
		specW.Write(specJSON)
		specW.Close()
	}()

	ready := bufio.NewReader(pipes[1][0])
	line, rerr := ready.ReadString('\n')
	for strings.HasPrefix(line, "warning: ") {
		c.warnings = append(c.warnings, strings.TrimSuffix(line, "\n"))
		line, rerr = ready.ReadString('\n')
	}
	line = strings.TrimSuffix(line, "\n")
	switch {
	case line == "ready":
	case strings.HasPrefix(line, "error: "):
		return fail(errors.New(strings.TrimPrefix(line, "error: ")))
	default:
		unix.Kill(pid, unix.SIGKILL)
		<-c.done
		if rerr == nil {
			rerr = fmt.Errorf("unexpected message %q", line)
		}
		return nil, fmt.Errorf("container init died during setup (status %d): %v", ExitStatus(c.status), rerr)
	}
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	if err != nil {
		return fail(fmt.Errorf("read pid namespace of %d: %w", pid, err))
	}
	c.pidNS = ns
	if console != nil {
		if c.console, err = recvConsole(console); err != nil {
			return fail(err)
		}
	}
	c.startW = pipes[2][1]
	pipes[2][1] = nil
	return c, nil
}

// ownNetAnnotation, set by the agent on the spec it hands a container's
// init (and removed from what the host sent), has the init enter a
// network namespace of its own.
const ownNetAnnotation = "io.skiff.guest.own-network-namespace"

// forInit is spec as a container init gets it.
func forInit(spec *specs.Spec, ownNet bool) *specs.Spec {
	_, had := spec.Annotations[ownNetAnnotation]
	if !ownNet && !had {
		return spec
	}
	s := *spec
	s.Annotations = maps.Clone(spec.Annotations)
	delete(s.Annotations, ownNetAnnotation)
	if ownNet {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[ownNetAnnotation] = "true"
	}
	return &s
}

// Validate refuses specs this runtime cannot run, with a message saying why.
func Validate(spec *specs.Spec) error {
	switch {
	case spec == nil:
		return errors.New("spec is missing")
	case spec.Process == nil:
		return errors.New("spec has no process")
	case len(spec.Process.Args) == 0 || spec.Process.Args[0] == "":
		return errors.New("process.args must not be empty")
	case spec.Root == nil || !strings.HasPrefix(spec.Root.Path, "/"):
		return errors.New("root.path must be an absolute guest path")
	case spec.Process.Cwd != "" && !strings.HasPrefix(spec.Process.Cwd, "/"):
		return fmt.Errorf("process.cwd %q must be absolute", spec.Process.Cwd)
	}
	for _, m := range spec.Mounts {
		if !strings.HasPrefix(m.Destination, "/") {
			return fmt.Errorf("mount destination %q must be absolute", m.Destination)
		}
	}
	return nil
}

// Warnings are what setup skipped (a cgroup mount, say) without failing.
func (c *Container) Warnings() []string { return c.warnings }

// Console is the master of the container process's terminal, nil without
// one.
func (c *Container) Console() *os.File { return c.console }

// RemoveCgroup removes the container's guest cgroup once its processes
// are gone.
func (c *Container) RemoveCgroup() {
	if c.cgroup != "" {
		os.Remove(c.cgroup)
	}
}

// Pid is the guest PID of the container's process.
func (c *Container) Pid() int { return c.pid }

// Start lets the process exec the user program. It may be called once.
func (c *Container) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return errors.New("container already started")
	}
	select {
	case <-c.done:
		return fmt.Errorf("container process already exited with status %d", ExitStatus(c.status))
	default:
	}
	c.started = true
	_, err := c.startW.Write([]byte{0})
	c.startW.Close()
	if err != nil {
		return fmt.Errorf("release container process: %w", err)
	}
	return nil
}

// Done is closed once the container's process has exited and been reaped.
func (c *Container) Done() <-chan struct{} { return c.done }

// ExitStatus blocks until the process exited and returns its status as a
// shell reports it.
func (c *Container) ExitStatus() int {
	<-c.done
	return ExitStatus(c.status)
}

// Signal sends sig to the container's process, or with all to every process
// in its PID namespace. Signalling an exited container is not an error.
func (c *Container) Signal(sig unix.Signal, all bool) error {
	select {
	case <-c.done:
		return nil // its PID may be reused now
	default:
	}
	if !all {
		if err := unix.Kill(c.pid, sig); err != nil && err != unix.ESRCH {
			return fmt.Errorf("signal %d to %d: %w", sig, c.pid, err)
		}
		return nil
	}
	if c.cgroup != "" {
		return signalCgroup(c.cgroup, sig)
	}
	if c.pidNS == hostPIDNS() {
		// No PID namespace and no cgroup: nothing tells its processes
		// from the guest's; the init process is all we can reach.
		return unix.Kill(c.pid, sig)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	for _, e := range ents {
		pid := 0
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil || pid <= 1 {
			continue
		}
		ns, err := os.Readlink("/proc/" + e.Name() + "/ns/pid")
		if err != nil || ns != c.pidNS {
			continue
		}
		if err := unix.Kill(pid, sig); err != nil && err != unix.ESRCH {
			return fmt.Errorf("signal %d to %d: %w", sig, pid, err)
		}
	}
	return nil
}

// ExitStatus encodes a wait status the way a shell does: the exit code, or
// 128+N for death by signal N.
func ExitStatus(ws unix.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return 255
}

func hasNamespace(spec *specs.Spec, t specs.LinuxNamespaceType) bool {
	if spec.Linux == nil {
		return false
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == t {
			return true
		}
	}
	return false
}

func hostPIDNS() string {
	ns, _ := os.Readlink("/proc/self/ns/pid")
	return ns
}

// cgroupRoot holds one cgroup per container in the guest's cgroup2 tree.
const cgroupRoot = "/sys/fs/cgroup/skiff"

// makeCgroup creates the container's cgroup and opens it for
// CLONE_INTO_CGROUP, so the process is in it from its first instruction.
// Without cgroup2 it returns "" and -1: the container runs without one.
func makeCgroup(id string) (string, int) {
	dir := cgroupRoot + "/" + id
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", -1
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		os.Remove(dir)
		return "", -1
	}
	return dir, fd
}

// intoCgroup makes the container's cgroup and sets attr to fork into it;
// the caller closes attr.Sys.CgroupFD after the fork.
func intoCgroup(id string, attr *syscall.ProcAttr) string {
	dir, fd := makeCgroup(id)
	if fd >= 0 {
		attr.Sys.UseCgroupFD = true
		attr.Sys.CgroupFD = fd
	}
	return dir
}

// signalCgroup signals every process of a cgroup; SIGKILL goes through
// cgroup.kill, which also catches processes forking meanwhile.
func signalCgroup(dir string, sig unix.Signal) error {
	if sig == unix.SIGKILL {
		if err := os.WriteFile(dir+"/cgroup.kill", []byte("1"), 0); err == nil {
			return nil
		}
	}
	b, err := os.ReadFile(dir + "/cgroup.procs")
	if err != nil {
		return fmt.Errorf("list processes of %s: %w", dir, err)
	}
	for _, f := range strings.Fields(string(b)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err != nil {
			continue
		}
		if err := unix.Kill(pid, sig); err != nil && err != unix.ESRCH {
			return fmt.Errorf("signal %d to %d: %w", sig, pid, err)
		}
	}
	return nil
}
