package agent

import (
	"fmt"
	"os"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agent/container"
	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// proc is one process of a container as the protocol sees it: the init
// process or an exec'd one.
type proc struct {
	pid     int
	stdio   [3]*stdioPipe // stdin, stdout, stderr
	console *os.File      // terminal master, nil without a terminal
	done    <-chan struct{}
	status  func() int
	signal  func(unix.Signal) error
}

// process finds a process of a container: its init when execID is empty.
func (a *Agent) process(id, execID string) (*ctr, *proc, error) {
	c, err := a.lookup(id)
	if err != nil {
		return nil, nil, err
	}
	if execID == "" {
		return c, c.init, nil
	}
	a.mu.Lock()
	p := c.execs[execID]
	a.mu.Unlock()
	if p == nil {
		return nil, nil, fmt.Errorf("container %s: process %s not found", id, execID)
	}
	return c, p, nil
}

func (a *Agent) execProcess(req *protocol.ExecProcessRequest) (*protocol.ExecProcessResponse, error) {
	if !validID(req.ExecID) {
		return nil, fmt.Errorf("invalid exec ID %q", req.ExecID)
	}
	c, err := a.lookup(req.ID)
	if err != nil {
		return nil, err
	}
	p, err := a.startExec(c, req.ExecID, func() (*proc, error) { return a.exec(c, req.Process) })
	if err != nil {
		return nil, fmt.Errorf("exec in container %s: %w", req.ID, err)
	}
	a.log.debugf("container %s: exec %s started", req.ID, req.ExecID)
	return &protocol.ExecProcessResponse{PID: p.pid}, nil
}

// startExec runs start for a new process execID of c: the ID is reserved
// while it starts (a second one with the same ID is refused), and the
// process registered once it runs.
func (a *Agent) startExec(c *ctr, execID string, start func() (*proc, error)) (*proc, error) {
	a.mu.Lock()
	if _, dup := c.execs[execID]; dup {
		a.mu.Unlock()
		return nil, fmt.Errorf("process %s already exists", execID)
	}
	c.execs[execID] = nil // reserved
	a.mu.Unlock()

	p, err := start()
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		delete(c.execs, execID)
		return nil, err
	}
	c.execs[execID] = p
	return p, nil
}

func (a *Agent) exec(c *ctr, spec *specs.Process) (*proc, error) {
	return startProc(func(child [3]*os.File) (*proc, error) {
		x, err := c.c.Exec(spec, child[0], child[1], child[2], a.reaper)
		if err != nil {
			return nil, err
		}
		return &proc{pid: x.Pid(), console: x.Console(), done: x.Done(), status: x.ExitStatus, signal: x.Signal}, nil
	})
}

// waitProcess answers once the process has exited and its output has
// reached the host. An exec'd process is waited for once; then it is
// forgotten.
func (a *Agent) waitProcess(req *protocol.WaitProcessRequest) (*protocol.WaitProcessResponse, error) {
	c, p, err := a.process(req.ID, req.ExecID)
	if err != nil {
		return nil, err
	}
	status := p.status()
	p.waitOutput()
	if req.ExecID != "" {
		a.mu.Lock()
		if c.execs[req.ExecID] == p {
			delete(c.execs, req.ExecID)
		}
		a.mu.Unlock()
		p.closeUnattached()
	}
	return &protocol.WaitProcessResponse{ExitStatus: status}, nil
}

func (a *Agent) resizeTerminal(req *protocol.ResizeTerminalRequest) error {
	_, p, err := a.process(req.ID, req.ExecID)
	if err != nil {
		return err
	}
	if p.console == nil {
		return fmt.Errorf("container %s: the process has no terminal", req.ID)
	}
	if err := container.Resize(p.console, req.Rows, req.Cols); err != nil {
		return fmt.Errorf("container %s: resize terminal: %w", req.ID, err)
	}
	return nil
}

func (a *Agent) signalProcess(req *protocol.SignalProcessRequest) error {
	c, p, err := a.process(req.ID, req.ExecID)
	if err != nil {
		return err
	}
	if req.Signal <= 0 || req.Signal > 64 {
		return fmt.Errorf("invalid signal %d", req.Signal)
	}
	if req.All {
		err = c.c.Signal(unix.Signal(req.Signal), true)
	} else {
		err = p.signal(unix.Signal(req.Signal))
	}
	if err != nil {
		return fmt.Errorf("container %s: %w", req.ID, err)
	}
	return nil
}
