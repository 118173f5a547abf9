// Package container creates one container process inside the guest, the way
// a runc-like runtime does on a host: the agent re-executes itself in new
// mount, PID, UTS and IPC namespaces; that child ("container init") builds
// the container's root filesystem from the OCI spec, pivots into it, drops
// to the spec's user and stops before the user program's first instruction,
// waiting for Start.
//
// The parent side (create.go, exec.go, zygote.go: what the agent runs) is
// kept apart from the child side (init.go, setup.go: what the re-executed
// child runs); contract.go is what they agree on.
//
// The package must not reap processes itself: the agent is PID 1 and owns
// wait4 through the Reaper it passes in. It does not speak the agent
// protocol and does not touch the agent channel. It must not import the
// agent package, nor any host package: from agentclient/protocol it takes
// only the shared names (capabilities, mount options) and message types.
package container

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
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
	*Child // its init process
	id     string
	pidNS  string // readlink of /proc/<pid>/ns/pid, to find all its processes
	// cgroup is the container's own cgroup v2 directory in the guest, ""
	// when the guest has no cgroup2. It finds every process of the
	// container even when the spec asks for no PID namespace.
	cgroup string

	mu      sync.Mutex
	startW  *os.File
	started bool
	// execR is the ready pipe, whose EOF after Start says the user
	// program was exec'd (or the init died); execed is closed then.
	// startedAt is when Start released the init.
	execR     *os.File
	execed    chan struct{}
	startedAt time.Time

	warnings []string
	console  *os.File // the terminal's master (process.terminal=true)
}

// ownNetAnnotation, set by the agent on the spec it hands a container's
// init (and removed from what the host sent), has the init enter a
// network namespace of its own.
const ownNetAnnotation = "io.skiff.guest.own-network-namespace"

// forInit is spec as a container init gets it. sharedUTS: the init is
// born in its sandbox's UTS namespace, whose name is the pod's, and sets
// none of its own.
func forInit(spec *specs.Spec, ownNet, sharedUTS bool) *specs.Spec {
	_, had := spec.Annotations[ownNetAnnotation]
	names := sharedUTS && (spec.Hostname != "" || spec.Domainname != "")
	if !ownNet && !had && !names {
		return spec
	}
	s := *spec
	if sharedUTS {
		s.Hostname, s.Domainname = "", ""
	}
	if !ownNet && !had {
		return &s
	}
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
		removeCgroupTree(c.cgroup)
	}
}

// Remove kills every process of the container (its whole cgroup, paused
// or not), waits until they are gone and removes its cgroup. It gives up
// after timeout, with the container left as it is then: a process stuck
// in the kernel (a hung share) may outlive SIGKILL for a while, and the
// caller may try again.
func (c *Container) Remove(timeout time.Duration) error {
	c.mu.Lock()
	if !c.started && c.startW != nil {
		c.startW.Close() // it would never be released now
	}
	if !c.started && c.execR != nil {
		c.execR.Close()
	}
	c.started = true
	c.mu.Unlock()
	if c.cgroup != "" {
		os.WriteFile(c.cgroup+"/cgroup.freeze", []byte("0"), 0)
	}
	deadline := time.Now().Add(timeout)
	for {
		if c.cgroup != "" {
			// Not c.Signal, which stops at an exited init: orphans
			// of an init without a PID namespace outlive it.
			signalCgroup(c.cgroup, unix.SIGKILL)
		} else {
			c.Signal(unix.SIGKILL, true)
		}
		c.Child.Signal(unix.SIGKILL)
		if c.exited() && c.removeCgroup() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("its processes still run %v after SIGKILL", timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// removeCgroup removes the container's cgroup, and those a runtime inside
// made below it, and reports whether it is gone: not while a process is
// in it.
func (c *Container) removeCgroup() bool {
	return c.cgroup == "" || removeCgroupTree(c.cgroup)
}

// execWait bounds how long a signal waits for the user program's exec.
const execWait = 2 * time.Second

// handlerGrace is how long after Start a signal to the init that has no
// handler for it is held until it has one (holdForHandler).
const handlerGrace = 2 * time.Second

// Start lets the process exec the user program. It may be called once.
// It does not wait for the exec (start's latency is the container's);
// a signal sent meanwhile does (holdForHandler).
func (c *Container) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return errors.New("container already started")
	}
	if c.exited() {
		return fmt.Errorf("container process already exited with status %d", ExitStatus(c.status))
	}
	c.started = true
	_, err := c.startW.Write([]byte{0})
	c.startW.Close()
	if err != nil {
		if c.execR != nil {
			c.execR.Close()
		}
		return fmt.Errorf("release container process: %w", err)
	}
	c.startedAt = time.Now()
	c.execed = make(chan struct{})
	if r := c.execR; r != nil {
		c.execR = nil
		// Bounded by the deadline; it ends on its own.
		go func() {
			defer close(c.execed)
			defer r.Close()
			r.SetReadDeadline(time.Now().Add(execWait))
			io.Copy(io.Discard, r)
		}()
	} else {
		close(c.execed)
	}
	return nil
}

// holdForHandler holds a signal sent to the container's init in the first
// moments after Start until the program is ready for it: it has a handler
// for it and has gone to sleep (in a wait, a read, a poll), or
// handlerGrace has passed, or the process ended. The kernel drops a
// signal an init of a PID namespace has no handler for, and under
// emulation a program's first instructions (a shell's trap, then its
// wait) come a hundred milliseconds or more after Start, where under runc
// they come within a millisecond: a caller that starts a container and at
// once signals it must not lose the signal, nor have it land between the
// handler and the wait, to the emulator's slowness. A signal sent later,
// or one that cannot be caught, goes at once.
func (c *Container) holdForHandler(sig unix.Signal) {
	if sig == unix.SIGKILL || sig == unix.SIGSTOP || c.pidNS == hostPIDNS() {
		return
	}
	c.mu.Lock()
	at, execed := c.startedAt, c.execed
	c.mu.Unlock()
	if execed == nil {
		return // not started: the init's own set-up takes it
	}
	// Before the exec, the init's handlers are the set-up's, not the
	// program's.
	<-execed
	for time.Since(at) < handlerGrace && !c.exited() {
		if ready, ok := readyFor(c.pid, sig); !ok || ready {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readyFor reports whether process pid has a handler for sig (the SigCgt
// mask of /proc/PID/status) and is asleep (State S) or stopped; ok is
// false when that cannot be read.
func readyFor(pid int, sig unix.Signal) (ready, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false, false
	}
	var caught, asleep, sawMask bool
	for _, line := range strings.Split(string(b), "\n") {
		if st, found := strings.CutPrefix(line, "State:"); found {
			st = strings.TrimSpace(st)
			asleep = strings.HasPrefix(st, "S") || strings.HasPrefix(st, "T") || strings.HasPrefix(st, "t")
		}
		if mask, found := strings.CutPrefix(line, "SigCgt:"); found {
			m, err := strconv.ParseUint(strings.TrimSpace(mask), 16, 64)
			if err != nil {
				return false, false
			}
			caught, sawMask = m&(1<<(uint(sig)-1)) != 0, true
		}
	}
	return caught && asleep, sawMask
}

// Signal sends sig to the container's process, or with all to every process
// in its PID namespace. Signalling an exited container is not an error.
func (c *Container) Signal(sig unix.Signal, all bool) error {
	if c.exited() {
		return nil // its PID may be reused now
	}
	if !all {
		c.holdForHandler(sig)
		return c.Child.Signal(sig)
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
