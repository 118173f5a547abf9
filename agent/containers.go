package agent

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agent/container"
	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// ctr is one container and the processes the agent runs in it.
type ctr struct {
	id     string
	c      *container.Container
	init   *proc
	execs  map[string]*proc // by exec ID, guarded by Agent.mu; nil value: being started
	shares []protocol.Share // those its CreateContainer named, held until it is removed
}

// lookup returns a created container, or the error the host shows.
func (a *Agent) lookup(id string) (*ctr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.containers[id]
	if c == nil {
		return nil, fmt.Errorf("container %s not found", id)
	}
	return c, nil
}

func (a *Agent) createContainer(req *protocol.CreateContainerRequest) (*protocol.CreateContainerResponse, error) {
	if !validID(req.ID) {
		return nil, fmt.Errorf("invalid container ID %q", req.ID)
	}
	if err := container.Validate(req.Spec); err != nil {
		return nil, fmt.Errorf("container %s: %w", req.ID, err)
	}
	for _, s := range req.Shares {
		if err := validateShare(s); err != nil {
			return nil, err
		}
	}
	if req.Scratch != nil {
		if err := validateScratch(req.Scratch); err != nil {
			return nil, err
		}
	}
	a.mu.Lock()
	if a.stopping {
		a.mu.Unlock()
		return nil, errors.New("agent is shutting down")
	}
	if _, dup := a.containers[req.ID]; dup {
		a.mu.Unlock()
		return nil, fmt.Errorf("container %s already exists", req.ID)
	}
	var sandbox *container.Container
	if req.Sandbox != "" {
		sb := a.containers[req.Sandbox]
		if sb == nil {
			a.mu.Unlock()
			return nil, fmt.Errorf("create container %s: its sandbox container %s is not in this guest (create the sandbox first)", req.ID, req.Sandbox)
		}
		sandbox = sb.c
	}
	a.containers[req.ID] = nil // reserve the ID while creating
	a.mu.Unlock()

	c, err := a.create(req, sandbox)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		delete(a.containers, req.ID)
		return nil, fmt.Errorf("create container %s: %w", req.ID, err)
	}
	a.containers[req.ID] = c
	return &protocol.CreateContainerResponse{PID: c.c.Pid()}, nil
}

// create mounts the container's shares and creates it, its init on fresh
// stdio pipes, in the namespaces of sandbox if not nil. On failure it
// releases the shares it took.
func (a *Agent) create(req *protocol.CreateContainerRequest, sandbox *container.Container) (_ *ctr, err error) {
	if req.Scratch != nil {
		if err := a.holdScratch(req.Scratch); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				a.dropScratch(req.ID)
			}
		}()
	}
	held, err := a.holdShares(req.Shares)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			a.releaseShares(held)
		}
	}()
	var cc *container.Container
	init, err := startProc(func(child [3]*os.File) (*proc, error) {
		var err error
		if cc, err = a.newContainer(req.ID, req.Spec, sandbox, child); err != nil {
			return nil, err
		}
		return &proc{
			pid:     cc.Pid(),
			console: cc.Console(),
			done:    cc.Done(),
			status:  cc.ExitStatus,
			signal:  func(sig unix.Signal) error { return cc.Signal(sig, false) },
		}, nil
	})
	if err != nil {
		return nil, err
	}
	for _, w := range cc.Warnings() {
		a.log.debugf("container %s: %s", req.ID, w)
	}
	a.log.debugf("container %s created, pid %d", req.ID, cc.Pid())
	return &ctr{id: req.ID, c: cc, init: init, execs: map[string]*proc{}, shares: held}, nil
}

// removeTimeout bounds the wait for a removed container's processes to
// die after SIGKILL.
const removeTimeout = 10 * time.Second

// removeContainer kills what still runs of a container, removes its
// cgroup, releases its shares and forgets it: its ID is free again. The
// container is out of reach while that happens. Containers that joined
// its namespaces keep them: a namespace lives while a process is in it.
func (a *Agent) removeContainer(req *protocol.RemoveContainerRequest) error {
	a.mu.Lock()
	c := a.containers[req.ID]
	if c == nil {
		a.mu.Unlock()
		return fmt.Errorf("container %s not found", req.ID)
	}
	a.containers[req.ID] = nil // the ID stays taken until it is gone
	a.mu.Unlock()
	if err := c.c.Remove(removeTimeout); err != nil {
		a.mu.Lock()
		a.containers[req.ID] = c
		a.mu.Unlock()
		return fmt.Errorf("remove container %s: %w", req.ID, err)
	}
	a.mu.Lock()
	procs := []*proc{c.init}
	for _, p := range c.execs {
		if p != nil {
			procs = append(procs, p)
		}
	}
	a.mu.Unlock()
	for _, p := range procs {
		p.closeUnattached()
	}
	a.releaseShares(c.shares)
	a.dropScratch(req.ID)
	a.mu.Lock()
	delete(a.containers, req.ID)
	a.mu.Unlock()
	a.log.debugf("container %s removed", req.ID)
	return nil
}

func (a *Agent) startContainer(req *protocol.StartContainerRequest) error {
	c, err := a.lookup(req.ID)
	if err != nil {
		return err
	}
	if err := c.c.Start(); err != nil {
		return fmt.Errorf("start container %s: %w", req.ID, err)
	}
	return nil
}

func (a *Agent) listProcesses(req *protocol.ListProcessesRequest) (*protocol.ListProcessesResponse, error) {
	c, err := a.lookup(req.ID)
	if err != nil {
		return nil, err
	}
	ps, err := c.c.Processes()
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", req.ID, err)
	}
	out := protocol.ListProcessesResponse{Processes: []protocol.ProcessInfo{}}
	for _, p := range ps {
		out.Processes = append(out.Processes, protocol.ProcessInfo{PID: p.PID, PPID: p.PPID, UID: p.UID, Args: p.Args})
	}
	return &out, nil
}

func (a *Agent) pauseContainer(req *protocol.PauseContainerRequest) error {
	return a.freeze(req.ID, true)
}

func (a *Agent) resumeContainer(req *protocol.ResumeContainerRequest) error {
	return a.freeze(req.ID, false)
}

func (a *Agent) freeze(id string, frozen bool) error {
	c, err := a.lookup(id)
	if err != nil {
		return err
	}
	if err := c.c.Freeze(frozen); err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	return nil
}

// validName reports whether s is 1..max characters of [A-Za-z0-9_.+-],
// the first alphanumeric when alnumFirst. A hand-written check rather than
// a regexp: compiling one at package init costs every guest process
// (agent, zygote, container init) its start-up time under TCG.
func validName(s string, max int, alnumFirst bool) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 && alnumFirst || !strings.ContainsRune("_.+-", rune(c))) {
			return false
		}
	}
	return true
}

// validID is the IDs the agent accepts for containers and processes.
func validID(s string) bool { return validName(s, 1024, true) }
