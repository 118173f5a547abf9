package container

import (
	"fmt"
	"os"
	"runtime"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// A pod's containers share their sandbox container's network, IPC and UTS
// namespaces. The spec names them by a path, but that path is the host's
// (/proc/<pid>/ns/net of the host process standing for the sandbox) and
// means nothing here: the agent is told which container of the guest is
// the sandbox, and its init's namespaces are the ones joined.

// nsKind is a namespace a container may join: its type in a spec, its
// name under /proc/PID/ns and its clone flag.
type nsKind struct {
	typ  specs.LinuxNamespaceType
	proc string
	flag int
}

var (
	nsNet    = nsKind{specs.NetworkNamespace, "net", unix.CLONE_NEWNET}
	nsIPC    = nsKind{specs.IPCNamespace, "ipc", unix.CLONE_NEWIPC}
	nsUTS    = nsKind{specs.UTSNamespace, "uts", unix.CLONE_NEWUTS}
	nsMnt    = nsKind{specs.MountNamespace, "mnt", unix.CLONE_NEWNS}
	nsPID    = nsKind{specs.PIDNamespace, "pid", unix.CLONE_NEWPID}
	nsCgroup = nsKind{specs.CgroupNamespace, "cgroup", unix.CLONE_NEWCGROUP}
)

// sandboxShared are the namespaces a pod's container takes from its
// sandbox when its spec names them by path. Mount and PID namespaces are
// always a container's own, and so is its cgroup.
var sandboxShared = []nsKind{nsNet, nsIPC, nsUTS}

// toJoin is the namespaces of sandboxShared that spec names with a path.
func toJoin(spec *specs.Spec) []nsKind {
	if spec.Linux == nil {
		return nil
	}
	var out []nsKind
	for _, k := range sandboxShared {
		for _, ns := range spec.Linux.Namespaces {
			if ns.Type == k.typ && ns.Path != "" {
				out = append(out, k)
				break
			}
		}
	}
	return out
}

// nsFile is an open namespace of some process, to be entered with setns.
type nsFile struct {
	nsKind
	f *os.File
}

func closeNamespaces(ns []nsFile) {
	for _, n := range ns {
		n.f.Close()
	}
}

// joins reports whether ns holds a namespace of kind k.
func joins(ns []nsFile, k nsKind) bool {
	for _, n := range ns {
		if n.flag == k.flag {
			return true
		}
	}
	return false
}

// namespaces opens the namespaces of the container's init, in the order
// of kinds. An init that has exited has none left to give: its PID may
// be another process's by now, so it is checked again once they are open.
func (c *Container) namespaces(kinds ...nsKind) ([]nsFile, error) {
	gone := fmt.Errorf("container %s has exited: its namespaces are gone", c.id)
	if c.exited() {
		return nil, gone
	}
	var ns []nsFile
	for _, k := range kinds {
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", c.pid, k.proc))
		if err != nil {
			closeNamespaces(ns)
			if c.exited() {
				return nil, gone
			}
			return nil, fmt.Errorf("open %s namespace of container %s: %w", k.proc, c.id, err)
		}
		ns = append(ns, nsFile{k, f})
	}
	if c.exited() {
		closeNamespaces(ns)
		return nil, gone
	}
	return ns, nil
}

// forkIn starts the agent binary again as argv, in the namespaces ns:
// setns moves only the calling thread (and, for a PID namespace, only
// the children it creates afterwards), so the fork happens on a thread of
// its own that has joined them. That thread is never unlocked: it dies
// with its goroutine and no other work ever runs in those namespaces.
// Without namespaces to join it forks from the caller's thread.
func forkIn(ns []nsFile, argv []string, attr *syscall.ProcAttr, r Reaper) (int, <-chan unix.WaitStatus, error) {
	fork := func() (int, <-chan unix.WaitStatus, error) {
		return r.Track(func() (int, error) { return syscall.ForkExec("/proc/self/exe", argv, attr) })
	}
	if len(ns) == 0 {
		return fork()
	}
	type result struct {
		pid int
		ch  <-chan unix.WaitStatus
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		for _, n := range ns {
			if err := unix.Setns(int(n.f.Fd()), n.flag); err != nil {
				res <- result{err: fmt.Errorf("join the %s namespace: %w", n.proc, err)}
				return
			}
		}
		pid, ch, err := fork()
		res <- result{pid, ch, err}
	}()
	out := <-res
	return out.pid, out.ch, out.err
}
