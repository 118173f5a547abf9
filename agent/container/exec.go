package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Process is a process exec'd into a container.
type Process struct {
	*Child
	console *os.File
}

// Console is the master of the process's terminal, nil without one.
func (p *Process) Console() *os.File { return p.console }

// Exec starts proc inside the container: in the mount, UTS, IPC, network,
// cgroup and PID namespaces and the cgroup of its init process, with stdio on the given
// files (the caller keeps and closes its own copies). It returns once the
// program has been exec'd, or with the error that kept it from running.
func (c *Container) Exec(proc *specs.Process, stdin, stdout, stderr *os.File, r Reaper) (*Process, error) {
	if err := c.checkExec(proc); err != nil {
		return nil, err
	}
	specJSON, err := json.Marshal(proc)
	if err != nil {
		return nil, fmt.Errorf("encode process: %w", err)
	}
	// The namespaces the child joins itself (fdMntNS on), then the PID
	// namespace it is born in.
	ns, err := c.namespaces(nsMnt, nsUTS, nsIPC, nsNet, nsCgroup, nsPID)
	if err != nil {
		return nil, err
	}
	defer closeNamespaces(ns)
	h, err := newHandshake(false, proc.Terminal)
	if err != nil {
		return nil, err
	}
	defer h.close()
	attr := &syscall.ProcAttr{
		Env:   []string{execEnv},
		Files: append(h.fds(stdin, stdout, stderr, true), ns[0].f.Fd(), ns[1].f.Fd(), ns[2].f.Fd(), ns[3].f.Fd(), ns[4].f.Fd()),
		Sys:   &syscall.SysProcAttr{Setsid: true},
	}
	if dir := c.execCgroup(); dir != "" {
		fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err == nil {
			defer unix.Close(fd)
			attr.Sys.UseCgroupFD = true
			attr.Sys.CgroupFD = fd
		}
	}
	pid, status, err := forkIn(ns[5:], []string{"skiff-exec", ExecArg}, attr, r)
	if err != nil {
		return nil, fmt.Errorf("start exec process: %w", err)
	}
	p := &Process{Child: Watch(pid, status)}
	h.childStarted()
	if err := p.awaitExec(h, specJSON); err != nil {
		p.kill()
		return nil, err
	}
	return p, nil
}

// execCgroup is the cgroup an exec'd process is born in: its init's, as
// runc does. That is the container's own cgroup, or the leaf the init
// lives in once the cgroup is delegated (a cgroup that gives controllers
// to its children may hold no process), or wherever a runtime inside
// moved the init since.
func (c *Container) execCgroup() string {
	if c.cgroup == "" {
		return ""
	}
	if dir, err := processCgroup(c.pid); err == nil && (dir == c.cgroup || strings.HasPrefix(dir, c.cgroup+"/")) {
		return dir
	}
	return c.cgroup
}

// checkExec refuses a process spec that cannot run, or a container whose
// init has exited.
func (c *Container) checkExec(proc *specs.Process) error {
	if proc == nil || len(proc.Args) == 0 || proc.Args[0] == "" {
		return errors.New("process.args must not be empty")
	}
	if proc.Cwd != "" && !strings.HasPrefix(proc.Cwd, "/") {
		return fmt.Errorf("process.cwd %q must be absolute", proc.Cwd)
	}
	if c.exited() {
		return errors.New("the container's process has exited: cannot exec in a stopped container")
	}
	return nil
}

// awaitExec gives the exec child its process spec and waits until it has
// exec'd (EOF on the ready pipe) or reported the error that kept it from
// running; then takes its terminal.
func (p *Process) awaitExec(h *handshake, spec []byte) error {
	h.sendSpec(spec)
	_, line, err := h.readReport()
	if err != nil && err != io.EOF {
		return fmt.Errorf("exec process: %w", err)
	}
	if msg, ok := strings.CutPrefix(line, "error: "); ok {
		return errors.New(msg)
	}
	if h.console != nil {
		if p.console, err = recvConsole(h.console); err != nil {
			return err
		}
	}
	return nil
}
