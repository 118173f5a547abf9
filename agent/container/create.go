package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The parent side of creating a container: what the agent does to start a
// container's init and wait until it is ready. The child's side is
// init.go and setup.go.

// New creates the container's process with stdio on the given files (the
// child's ends; the caller keeps and closes its own copies) and returns once
// the process is ready to exec the user program. A setup failure is returned
// as an error and leaves no process behind. The process is z when z (which
// may be nil) can be it; z is spent then.
//
// ownNet gives the container a network namespace of its own, loopback
// only, instead of the guest's: for a sandbox without networking in a
// guest that has NICs anyway (a VM template's NIC slot).
//
// sandbox, when not nil, is the pod's sandbox container: the new one
// joins its network, IPC and UTS namespaces wherever spec names a
// namespace of that type by path (see join.go), and neither sets a
// hostname nor gets a network namespace of its own then.
func New(id string, spec *specs.Spec, ownNet bool, sandbox *Container, stdin, stdout, stderr *os.File, r Reaper, z *Zygote) (*Container, error) {
	if err := Validate(spec); err != nil {
		return nil, err
	}
	var join []nsFile
	if sandbox != nil {
		var err error
		if join, err = sandbox.namespaces(toJoin(spec)...); err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
		defer closeNamespaces(join)
	}
	specJSON, err := json.Marshal(forInit(spec, ownNet && !joins(join, nsNet), joins(join, nsUTS)))
	if err != nil {
		return nil, fmt.Errorf("encode spec: %w", err)
	}
	h, err := newHandshake(true, spec.Process.Terminal)
	if err != nil {
		return nil, err
	}
	defer h.close()
	l := newLauncher(id, spec, r, z, join)
	var res *specs.LinuxResources
	if spec.Linux != nil {
		res = spec.Linux.Resources
	}
	pid, status, err := l.launch(h.fds(stdin, stdout, stderr, false), res)
	if err != nil {
		return nil, err
	}
	c := &Container{Child: Watch(pid, status), id: id, cgroup: l.cgroup, warnings: l.warnings}
	h.childStarted()
	if err := c.awaitReady(h, specJSON); err != nil {
		c.kill()
		return nil, err
	}
	if c.cgroup != "" && delegates(spec) {
		if err := delegate(c.cgroup, c.pid); err != nil {
			c.warnings = append(c.warnings, fmt.Sprintf("warning: the container's cgroup is not delegated: %v", err))
		}
	}
	return c, nil
}

// delegates reports whether the container gets its cgroup to manage: its
// spec mounts a cgroup filesystem writable (podman --privileged does),
// which means nothing unless a runtime inside may make cgroups there.
func delegates(spec *specs.Spec) bool {
	for _, m := range spec.Mounts {
		if m.Type != "cgroup" && m.Type != "cgroup2" {
			continue
		}
		if parseMountOptions(m.Type, m.Options).flags&unix.MS_RDONLY == 0 {
			return true
		}
	}
	return false
}

// awaitReady gives the container's init its spec and waits for its
// report: ready, stopped before the user program, or the error that
// stopped its setup. Then it takes what the agent keeps of it.
func (c *Container) awaitReady(h *handshake, spec []byte) error {
	h.sendSpec(spec)
	warnings, line, err := h.readReport()
	c.warnings = append(c.warnings, warnings...)
	switch {
	case line == "ready":
	case strings.HasPrefix(line, "error: "):
		return errors.New(strings.TrimPrefix(line, "error: "))
	default:
		c.kill()
		if err == nil {
			err = fmt.Errorf("unexpected message %q", line)
		}
		return fmt.Errorf("container init died during setup (status %d): %v", ExitStatus(c.status), err)
	}
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", c.pid))
	if err != nil {
		return fmt.Errorf("read pid namespace of %d: %w", c.pid, err)
	}
	c.pidNS = ns
	if h.console != nil {
		if c.console, err = recvConsole(h.console); err != nil {
			return err
		}
	}
	c.startW = h.takeStart()
	c.execR = h.takeReady()
	return nil
}

// launcher starts a container's init: handed to the zygote when one is
// usable for the spec, forked otherwise. It is the one place that makes
// that choice; a zygote that fails on the way is discarded and the init
// forked instead, with a warning.
type launcher struct {
	id       string
	r        Reaper
	z        *Zygote  // the zygote in use; nil: fork
	join     []nsFile // namespaces the init is born in, another container's
	attr     *syscall.ProcAttr
	cgroup   string
	warnings []string
}

func newLauncher(id string, spec *specs.Spec, r Reaper, z *Zygote, join []nsFile) *launcher {
	// Mount, UTS and IPC namespaces of its own unless joined: the
	// container must not touch the agent's mounts or the guest's name. A
	// PID namespace as the spec says, as runc does: without one the
	// process is not an init process.
	flags := uintptr(syscall.CLONE_NEWNS)
	for _, k := range []nsKind{nsUTS, nsIPC} {
		if !joins(join, k) {
			flags |= uintptr(k.flag)
		}
	}
	if hasNamespace(spec, specs.PIDNamespace) {
		flags |= syscall.CLONE_NEWPID
	}
	l := &launcher{id: id, r: r, join: join, attr: &syscall.ProcAttr{
		Env: []string{initEnv},
		Sys: &syscall.SysProcAttr{Setsid: true, Cloneflags: flags},
	}}
	// The zygote's namespaces were made at its birth, fresh: a container
	// that joins others' is forked from a thread inside them instead.
	if len(join) == 0 && z.usableFor(spec) {
		l.z = z
	}
	return l
}

// launch puts the init to be in the container's cgroup with its limits,
// then starts it with the descriptors fds.
func (l *launcher) launch(fds []uintptr, res *specs.LinuxResources) (int, <-chan unix.WaitStatus, error) {
	l.attr.Files = fds
	defer l.closeCgroupFD()
	l.joinCgroup()
	if err := applyResources(l.cgroup, res); err != nil {
		l.z.Discard()
		l.removeCgroup()
		return 0, nil, fmt.Errorf("resources: %w", err)
	}
	if l.z != nil {
		pid, status, err := l.z.hand(fds)
		if err == nil {
			return pid, status, nil
		}
		l.fallBack(err)
		if l.cgroup != "" {
			intoCgroup(l.id, l.attr) // the one the zygote was moved to
		}
	}
	pid, status, err := forkIn(l.join, []string{"skiff-init", InitArg}, l.attr, l.r)
	if err != nil {
		l.removeCgroup()
		return 0, nil, fmt.Errorf("start container init: %w", err)
	}
	return pid, status, nil
}

// joinCgroup makes the container's cgroup: the zygote is moved into it,
// or the fork will be born in it.
func (l *launcher) joinCgroup() {
	if l.z != nil {
		cgroup, err := l.z.adoptCgroup(l.id)
		if err == nil {
			l.cgroup = cgroup
			return
		}
		l.fallBack(err)
	}
	l.cgroup = intoCgroup(l.id, l.attr)
}

// fallBack gives up on the zygote: the init is forked.
func (l *launcher) fallBack(err error) {
	l.warnings = append(l.warnings, fmt.Sprintf("warning: %v; starting a container init", err))
	l.z.Discard()
	l.z = nil
}

func (l *launcher) closeCgroupFD() {
	if l.attr.Sys.UseCgroupFD {
		unix.Close(l.attr.Sys.CgroupFD)
		l.attr.Sys.UseCgroupFD = false
	}
}

func (l *launcher) removeCgroup() {
	if l.cgroup != "" {
		os.Remove(l.cgroup)
	}
}
