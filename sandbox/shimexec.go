package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/skiff-oci/skiff/agentclient"
	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// exec serves ctlExec on conn: it starts the process in the guest, relays
// the caller's files (or a console) for it, answers once it runs and again
// with its exit status. files are the caller's stdin, stdout and stderr;
// exec owns them. A caller that goes away (exec --detach) leaves the
// process running, its stdio still relayed.
func (s *shim) exec(conn net.Conn, req ctlRequest, files []*os.File) {
	defer closeFiles(files)
	reply := func(r ctlResponse) error { return protocol.WriteFrame(conn, r) }
	fail := func(err error) {
		s.log.Debug("exec failed", "exec", req.ExecID, "error", err)
		reply(ctlResponse{Error: err.Error()})
	}
	p := req.Process
	switch {
	case p == nil || len(p.Args) == 0:
		fail(errors.New("exec: the process has no args"))
		return
	case req.ConsoleSocket == "" && len(files) != 3:
		fail(fmt.Errorf("exec: got %d stdio descriptors from the caller, want 3", len(files)))
		return
	case req.ConsoleSocket != "" && !p.Terminal:
		fail(errors.New("cannot use console socket if skiff will not allocate tty (--tty)"))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), agentclient.DefaultCallTimeout)
	defer cancel()

	var in, out, errf, tty *os.File
	if req.ConsoleSocket != "" {
		slave, err := consolePty(req.ConsoleSocket)
		if err != nil {
			fail(err)
			return
		}
		defer slave.Close()
		in, out, tty = slave, slave, slave
	} else {
		in, out, errf = files[0], files[1], files[2]
		if p.Terminal {
			for _, f := range files[:2] {
				if isTerminal(f) {
					tty = f
					break
				}
			}
		}
	}

	pid, err := s.startProcess(ctx, req)
	if err != nil {
		fail(err)
		return
	}
	// The process runs from here on: every path below waits for it, so
	// that the guest forgets it.
	var outputs sync.WaitGroup
	pio, err := s.relayProcess(ctx, req.ExecID, p.Terminal, in, out, errf, tty, &outputs)
	if err != nil {
		s.agent.SignalProcess(ctx, protocol.SignalProcessRequest{ID: s.st.ID, ExecID: req.ExecID, Signal: 9})
		s.agent.WaitProcess(ctx, s.st.ID, req.ExecID)
		fail(fmt.Errorf("exec: attach to the process's stdio: %w", err))
		return
	}
	if err := reply(ctlResponse{PID: pid}); err != nil {
		s.log.Debug("exec caller went away", "exec", req.ExecID, "error", err)
	}
	conn.SetDeadline(time.Time{})
	go s.execSignals(conn, req.ExecID)

	status, err := s.waitProcess(req.ExecID)
	pio.finish()
	waitTimeout(&outputs, 5*time.Second)
	if err != nil {
		reply(ctlResponse{Error: fmt.Sprintf("exec: lost the process: %v", err)})
		return
	}
	reply(ctlResponse{Exited: true, ExitStatus: status})
}

// execSignals forwards the signals the exec caller passes on to the
// exec'd process, until the caller closes the connection.
func (s *shim) execSignals(conn net.Conn, execID string) {
	for {
		var req ctlRequest
		if err := protocol.ReadFrame(conn, &req); err != nil {
			return
		}
		if req.Op != ctlSignal || req.Signal <= 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), agentclient.DefaultCallTimeout)
		if err := s.agent.SignalProcess(ctx, protocol.SignalProcessRequest{ID: s.st.ID, ExecID: execID, Signal: req.Signal}); err != nil {
			s.log.Debug("forward signal to exec", "exec", execID, "error", err)
		}
		cancel()
	}
}
