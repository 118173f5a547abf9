package shimctl

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// Handler is what a shim does for each method. Every call but Shutdown
// names the container it acts on; the shim refuses one it does not hold.
type Handler interface {
	Start(ctx context.Context, id string) error
	Kill(ctx context.Context, id string, r KillRequest) error
	Pause(ctx context.Context, id string) error
	Resume(ctx context.Context, id string) error
	Processes(ctx context.Context, id string) (*ProcessesResponse, error)
	Update(ctx context.Context, id string, r UpdateRequest) error
	Stats(ctx context.Context, id string) (*StatsResponse, error)
	// Shutdown is called once its answer was sent.
	Shutdown(ctx context.Context)
	// Exec runs a process for an Exec or DebugConsole request; files are
	// the caller's stdio, x answers it. It owns files.
	Exec(id string, debug bool, r ExecRequest, files []*os.File, x *ExecConn)
	// AddContainer creates another container of the sandbox; as Exec.
	AddContainer(id string, r AddContainerRequest, files []*os.File, x *ExecConn)
	RemoveContainer(ctx context.Context, id string) error
}

// method is one entry of the dispatch table: decode the body, call the
// handler, give the body of the answer.
type method func(ctx context.Context, h Handler, req *Request) (any, error)

// none wraps a handler call that answers with no body.
func none(f func(ctx context.Context, h Handler, id string) error) method {
	return func(ctx context.Context, h Handler, req *Request) (any, error) {
		return nil, f(ctx, h, req.Container)
	}
}

// methods is the whole protocol as the shim serves it, Exec and Shutdown
// aside (Serve handles their connections itself).
var methods = map[string]method{
	MethodStart:  none(func(ctx context.Context, h Handler, id string) error { return h.Start(ctx, id) }),
	MethodPause:  none(func(ctx context.Context, h Handler, id string) error { return h.Pause(ctx, id) }),
	MethodResume: none(func(ctx context.Context, h Handler, id string) error { return h.Resume(ctx, id) }),
	MethodRemoveContainer: none(func(ctx context.Context, h Handler, id string) error {
		return h.RemoveContainer(ctx, id)
	}),
	MethodKill: func(ctx context.Context, h Handler, req *Request) (any, error) {
		var r KillRequest
		if err := decode(req, &r); err != nil {
			return nil, err
		}
		return nil, h.Kill(ctx, req.Container, r)
	},
	MethodUpdate: func(ctx context.Context, h Handler, req *Request) (any, error) {
		var r UpdateRequest
		if err := decode(req, &r); err != nil {
			return nil, err
		}
		return nil, h.Update(ctx, req.Container, r)
	},
	MethodProcesses: func(ctx context.Context, h Handler, req *Request) (any, error) {
		return h.Processes(ctx, req.Container)
	},
	MethodStats: func(ctx context.Context, h Handler, req *Request) (any, error) {
		return h.Stats(ctx, req.Container)
	},
}

func decode(req *Request, v any) error {
	if err := json.Unmarshal(req.Body, v); err != nil {
		return fmt.Errorf("%s: malformed request: %w", req.Method, err)
	}
	return nil
}

// Serve answers the verbs on ln until it is closed, each connection in a
// goroutine of its own.
func Serve(ln net.Listener, h Handler) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go serveConn(conn.(*net.UnixConn), h)
	}
}

func serveConn(conn *net.UnixConn, h Handler) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(CallTimeout))
	fr := &fdReader{conn: conn}
	var req Request
	if err := protocol.ReadFrame(fr, &req); err != nil {
		CloseFiles(fr.fds)
		return
	}
	switch req.Method {
	case MethodExec, MethodDebugConsole:
		var r ExecRequest
		if err := decode(&req, &r); err != nil {
			CloseFiles(fr.fds)
			reply(conn, nil, err)
			return
		}
		h.Exec(req.Container, req.Method == MethodDebugConsole, r, fr.fds, &ExecConn{conn: conn})
		return
	case MethodAddContainer:
		var r AddContainerRequest
		if err := decode(&req, &r); err != nil {
			CloseFiles(fr.fds)
			reply(conn, nil, err)
			return
		}
		h.AddContainer(req.Container, r, fr.fds, &ExecConn{conn: conn})
		return
	}
	CloseFiles(fr.fds)
	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	defer cancel()
	if req.Method == MethodShutdown {
		// Answer first: the caller waits for this process to exit next.
		reply(conn, nil, nil)
		h.Shutdown(ctx)
		return
	}
	m, ok := methods[req.Method]
	if !ok {
		reply(conn, nil, fmt.Errorf("unknown request %q", req.Method))
		return
	}
	body, err := m(ctx, h, &req)
	reply(conn, body, err)
}

// reply writes one answer: err, or body.
func reply(conn net.Conn, body any, err error) error {
	var rsp Response
	if err != nil {
		rsp.Error = err.Error()
	} else if body != nil {
		b, merr := json.Marshal(body)
		if merr != nil {
			rsp.Error = merr.Error()
		}
		rsp.Body = b
	}
	return protocol.WriteFrame(conn, rsp)
}

// ExecConn is the shim's end of an Exec connection.
type ExecConn struct{ conn net.Conn }

// Fail answers that the process could not start, or was lost.
func (x *ExecConn) Fail(err error) { reply(x.conn, nil, err) }

// Started answers that the process runs; the connection then lives as
// long as the process.
func (x *ExecConn) Started(pid int) error {
	err := reply(x.conn, ExecStarted{PID: pid}, nil)
	x.conn.SetDeadline(time.Time{})
	return err
}

// Exited gives the caller the process's exit status.
func (x *ExecConn) Exited(status int) { reply(x.conn, ExecExited{Status: status}, nil) }

// Signals calls fn with each signal the caller sends for the process,
// until the caller closes the connection.
func (x *ExecConn) Signals(fn func(signal int)) {
	for {
		var req Request
		if err := protocol.ReadFrame(x.conn, &req); err != nil {
			return
		}
		var r SignalRequest
		if req.Method != MethodSignal || json.Unmarshal(req.Body, &r) != nil || r.Signal <= 0 {
			continue
		}
		fn(r.Signal)
	}
}
