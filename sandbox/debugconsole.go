package sandbox

import (
	"context"
	"fmt"
	"os"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// ctlDebugConsole asks the shim for a shell in the guest itself. It runs
// exactly as ctlExec does (the caller's stdio as SCM_RIGHTS, a first
// response at the start, ctlSignal requests, a last one with the exit
// status); Process only says whether the shell gets a terminal, its size
// and TERM. The agent chooses the command.
const ctlDebugConsole = "debug-console"

// DebugConsoleOptions are the inputs of DebugConsole.
type DebugConsoleOptions struct {
	// Enabled is runtime.debug_console of the configuration in force;
	// ConfigSource names that configuration's file ("" for defaults).
	Enabled      bool
	ConfigSource string
	// Stdin, Stdout and Stderr are relayed to the shell; with a terminal
	// on stdin the shell gets a pty in the guest.
	Stdin, Stdout, Stderr *os.File
	// Signals received meanwhile are passed on to the shell.
	Signals <-chan os.Signal
}

// DebugConsole runs a shell in the VM of container id, in the guest's own
// root and namespaces (not the container's), for operators, and returns its
// exit status. It is refused unless the configuration enables it: the
// shell is root in the guest, beside every container of the sandbox.
func (s *Store) DebugConsole(ctx context.Context, id string, o DebugConsoleOptions) (int, error) {
	if !o.Enabled {
		where := "/etc/skiff/config.toml or the file given with --config"
		if o.ConfigSource != "" {
			where = o.ConfigSource
		}
		return 0, fmt.Errorf("debug-console is disabled: it gives a root shell in the VM, outside the container; to allow it set debug_console = true in the [runtime] section of %s", where)
	}
	d, l, st, err := s.open(id)
	if err != nil {
		return 0, err
	}
	status := d.status(st)
	l.Unlock()
	if status != StatusCreated && status != StatusRunning && status != StatusPaused {
		return 0, fmt.Errorf("cannot open a debug console in container %s: it is %s (its VM runs only while the container is created, running or paused)", id, status)
	}
	execID, err := newExecID()
	if err != nil {
		return 0, err
	}
	files := []*os.File{o.Stdin, o.Stdout, o.Stderr}
	for i, f := range files {
		if f == nil {
			return 0, fmt.Errorf("debug-console: stdio descriptor %d is missing", i)
		}
	}
	p := &specs.Process{Args: []string{"/bin/sh"}, Terminal: isTerminal(o.Stdin)}
	if t := os.Getenv("TERM"); t != "" {
		p.Env = []string{"TERM=" + t}
	}
	if p.Terminal {
		p.ConsoleSize = terminalSize(o.Stdin)
		restore, err := rawTerminal(o.Stdin)
		if err != nil {
			return 0, err
		}
		defer restore()
	}
	req := ctlRequest{Op: ctlDebugConsole, ExecID: "debug-" + strings.TrimPrefix(execID, "exec-"), Process: p}
	return attachExec(ctx, d, id, req, files, o.Signals, func(int) error { return nil })
}

// startProcess starts what a ctlExec or ctlDebugConsole request asks for
// in the guest and returns its guest PID.
func (s *shim) startProcess(ctx context.Context, req ctlRequest) (int, error) {
	if req.Op != ctlDebugConsole {
		return s.agent.ExecProcess(ctx, &protocol.ExecProcessRequest{ID: s.st.ID, ExecID: req.ExecID, Process: req.Process})
	}
	p := req.Process
	r := &protocol.DebugConsoleRequest{ID: s.st.ID, ExecID: req.ExecID, Terminal: p.Terminal}
	if cs := p.ConsoleSize; cs != nil && cs.Height <= 0xffff && cs.Width <= 0xffff {
		r.Rows, r.Cols = uint16(cs.Height), uint16(cs.Width)
	}
	for _, e := range p.Env {
		if v, ok := strings.CutPrefix(e, "TERM="); ok {
			r.Term = v
		}
	}
	s.log.Info("debug console opened in the guest", "exec", req.ExecID)
	return s.agent.DebugConsole(ctx, r)
}
