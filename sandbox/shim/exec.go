package shim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/skiff-oci/skiff/agentclient"
	"github.com/skiff-oci/skiff/agentclient/protocol"
	"github.com/skiff-oci/skiff/internal/tty"
	"github.com/skiff-oci/skiff/sandbox/shimctl"
)

// Exec serves an Exec or DebugConsole request: it starts the process in
// the guest, relays the caller's files (or a console) for it, answers once
// it runs and again with its exit status. files are the caller's stdin,
// stdout and stderr; Exec owns them. A caller that goes away (exec
// --detach) leaves the process running, its stdio still relayed.
func (s *shim) Exec(id string, debug bool, r shimctl.ExecRequest, files []*os.File, x *shimctl.ExecConn) {
	defer shimctl.CloseFiles(files)
	fail := func(err error) {
		s.log.Debug("exec failed", "exec", r.ExecID, "error", err)
		x.Fail(err)
	}
	c, err := s.container(id)
	if err == nil {
		err = checkExec(r, files)
	}
	if err != nil {
		fail(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), agentclient.DefaultCallTimeout)
	defer cancel()
	in, out, errf, term, err := execStdio(r, files)
	if err != nil {
		fail(err)
		return
	}
	if term != nil && r.ConsoleSocket != "" {
		defer term.Close()
	}
	pid, err := s.startProcess(ctx, c, debug, r)
	if err != nil {
		fail(err)
		return
	}
	// The process runs from here on: every path below waits for it, so
	// that the guest forgets it.
	var outputs sync.WaitGroup
	pio, err := s.relayProcess(ctx, c, r.ExecID, r.Process.Terminal, in, out, errf, term, &outputs)
	if err != nil {
		s.vm.Agent.SignalProcess(ctx, protocol.SignalProcessRequest{ID: id, ExecID: r.ExecID, Signal: 9})
		s.vm.Agent.WaitProcess(ctx, id, r.ExecID)
		fail(fmt.Errorf("exec: attach to the process's stdio: %w", err))
		return
	}
	if err := x.Started(pid); err != nil {
		s.log.Debug("exec caller went away", "exec", r.ExecID, "error", err)
	}
	go x.Signals(func(sig int) {
		ctx, cancel := context.WithTimeout(context.Background(), agentclient.DefaultCallTimeout)
		defer cancel()
		if err := s.vm.Agent.SignalProcess(ctx, protocol.SignalProcessRequest{ID: id, ExecID: r.ExecID, Signal: sig}); err != nil {
			s.log.Debug("forward signal to exec", "exec", r.ExecID, "error", err)
		}
	})

	status, err := s.waitProcess(c, r.ExecID)
	pio.finish()
	waitTimeout(&outputs, 5*time.Second)
	if err != nil {
		x.Fail(fmt.Errorf("exec: lost the process: %v", err))
		return
	}
	x.Exited(status)
}

// checkExec refuses a request the shim cannot serve.
func checkExec(r shimctl.ExecRequest, files []*os.File) error {
	p := r.Process
	switch {
	case p == nil || len(p.Args) == 0:
		return errors.New("exec: the process has no args")
	case r.ConsoleSocket == "" && len(files) != 3:
		return fmt.Errorf("exec: got %d stdio descriptors from the caller, want 3", len(files))
	case r.ConsoleSocket != "" && !p.Terminal:
		return errors.New("cannot use console socket if skiff will not allocate tty (--tty)")
	}
	return nil
}

// execStdio is what the process's stdio are relayed to: a new pty whose
// master goes to the console socket, or the caller's files. term is the
// terminal whose size the guest follows, if any.
func execStdio(r shimctl.ExecRequest, files []*os.File) (in, out, errf, term *os.File, err error) {
	if r.ConsoleSocket != "" {
		slave, err := consolePty(r.ConsoleSocket)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		return slave, slave, nil, slave, nil
	}
	in, out, errf = files[0], files[1], files[2]
	if r.Process.Terminal {
		for _, f := range files[:2] {
			if tty.IsTerminal(f) {
				term = f
				break
			}
		}
	}
	return in, out, errf, term, nil
}

// startProcess starts what an Exec or DebugConsole request asks for in
// the guest and returns its guest PID.
func (s *shim) startProcess(ctx context.Context, c *container, debug bool, r shimctl.ExecRequest) (int, error) {
	if !debug {
		return s.vm.Agent.ExecProcess(ctx, &protocol.ExecProcessRequest{ID: c.id(), ExecID: r.ExecID, Process: r.Process})
	}
	p := r.Process
	req := &protocol.DebugConsoleRequest{ID: c.id(), ExecID: r.ExecID, Terminal: p.Terminal}
	if cs := p.ConsoleSize; cs != nil && cs.Height <= 0xffff && cs.Width <= 0xffff {
		req.Rows, req.Cols = uint16(cs.Height), uint16(cs.Width)
	}
	for _, e := range p.Env {
		if v, ok := strings.CutPrefix(e, "TERM="); ok {
			req.Term = v
		}
	}
	s.log.Info("debug console opened in the guest", "exec", r.ExecID)
	return s.vm.Agent.DebugConsole(ctx, req)
}
