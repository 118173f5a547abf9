package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"runtime/debug"

	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// This file is the whole agent protocol as the guest serves it: every
// method and the handler that answers it. A handler is a typed func: the
// dispatcher decodes the method's request type, calls it, and encodes its
// reply. Nothing else adds to the table.

// handlers maps each method to its handler. returns: the handler's value
// is the response; acts: the response is protocol.Empty; streams: the
// response is protocol.Empty and the stream goes on (after runs once the
// response is written).
var handlers = map[string]handler{
	protocol.MethodPing:             returns((*Agent).ping),
	protocol.MethodCreateContainer:  returns((*Agent).createContainer),
	protocol.MethodStartContainer:   acts((*Agent).startContainer),
	protocol.MethodExecProcess:      returns((*Agent).execProcess),
	protocol.MethodDebugConsole:     returns((*Agent).debugConsole),
	protocol.MethodSignalProcess:    acts((*Agent).signalProcess),
	protocol.MethodWaitProcess:      returns((*Agent).waitProcess),
	protocol.MethodOpenStdio:        streams((*Agent).openStdio),
	protocol.MethodResizeTerminal:   acts((*Agent).resizeTerminal),
	protocol.MethodListProcesses:    returns((*Agent).listProcesses),
	protocol.MethodPauseContainer:   acts((*Agent).pauseContainer),
	protocol.MethodResumeContainer:  acts((*Agent).resumeContainer),
	protocol.MethodRemoveContainer:  acts((*Agent).removeContainer),
	protocol.MethodUpdateResources:  acts((*Agent).updateResources),
	protocol.MethodStats:            returns((*Agent).stats),
	protocol.MethodConfigureNetwork: acts((*Agent).configureNetwork),
	protocol.MethodReseed:           acts((*Agent).reseed),
	protocol.MethodWarm:             returns((*Agent).warm),
	protocol.MethodShutdown:         streams((*Agent).shutdown),
}

// handler answers one call from its raw request body; after, if not nil,
// runs once the response has been written.
type handler func(a *Agent, body json.RawMessage) (resp any, after func(net.Conn), err error)

// returns adapts a handler whose value is the response.
func returns[Req, Resp any](h func(*Agent, *Req) (Resp, error)) handler {
	return func(a *Agent, body json.RawMessage) (any, func(net.Conn), error) {
		var req Req
		if err := decode(body, &req); err != nil {
			return nil, nil, err
		}
		resp, err := h(a, &req)
		return resp, nil, err
	}
}

// acts adapts a handler that answers with protocol.Empty.
func acts[Req any](h func(*Agent, *Req) error) handler {
	return returns(func(a *Agent, req *Req) (protocol.Empty, error) {
		return protocol.Empty{}, h(a, req)
	})
}

// streams adapts a handler that answers with protocol.Empty and then
// uses the stream.
func streams[Req any](h func(*Agent, *Req) (func(net.Conn), error)) handler {
	return func(a *Agent, body json.RawMessage) (any, func(net.Conn), error) {
		var req Req
		if err := decode(body, &req); err != nil {
			return nil, nil, err
		}
		after, err := h(a, &req)
		return protocol.Empty{}, after, err
	}
}

// decode reads a request body; an empty one is the zero request.
func decode(body json.RawMessage, v any) error {
	if len(body) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("bad request body: %w", err)
	}
	return nil
}

// handle serves one stream: one Request, one Response, then whatever the
// method does with the stream. A panic fails this call, not the agent.
func (a *Agent) handle(st net.Conn) {
	responded := false
	defer func() {
		if r := recover(); r != nil {
			a.log.errorf("panic serving a call: %v\n%s", r, debug.Stack())
			if !responded {
				protocol.WriteFrame(st, protocol.Response{Error: fmt.Sprintf("agent: internal error: %v", r)})
			}
		}
		st.Close()
	}()
	req, err := a.readRequest(st)
	if err != nil {
		return
	}
	out, after := a.answer(req)
	responded = true
	if err := protocol.WriteFrame(st, out); err != nil {
		a.log.errorf("write %s response: %v", req.Method, err)
		return
	}
	if after != nil {
		after(st)
	}
}

// readRequest reads the stream's Request; a frame too large is answered
// at once.
func (a *Agent) readRequest(st net.Conn) (*protocol.Request, error) {
	var req protocol.Request
	if err := protocol.ReadFrame(st, &req); err != nil {
		a.log.errorf("read request: %v", err)
		if errors.Is(err, protocol.ErrFrameTooLarge) {
			protocol.WriteFrame(st, protocol.Response{Error: err.Error()})
		}
		return nil, err
	}
	if a.log.debug {
		body := string(req.Body)
		if len(body) > 160 {
			body = body[:160] + "..."
		}
		a.log.debugf("call %s %s", req.Method, body)
	}
	return &req, nil
}

// answer looks the method up in handlers, calls its handler and makes the
// Response; after is what the handler does with the stream next.
func (a *Agent) answer(req *protocol.Request) (out protocol.Response, after func(net.Conn)) {
	h, ok := handlers[req.Method]
	if !ok {
		a.log.debugf("unknown method %q", req.Method)
		return protocol.Response{Error: fmt.Sprintf("unknown method %q", req.Method)}, nil
	}
	resp, after, err := h(a, req.Body)
	if err != nil {
		a.log.debugf("%s failed: %v", req.Method, err)
		return protocol.Response{Error: err.Error()}, nil
	}
	b, err := json.Marshal(resp)
	if err != nil {
		return protocol.Response{Error: err.Error()}, nil
	}
	return protocol.Response{Body: b}, after
}

func (a *Agent) ping(*protocol.PingRequest) (*protocol.PingResponse, error) {
	var uts unix.Utsname
	unix.Uname(&uts)
	return &protocol.PingResponse{Version: protocol.Version, Kernel: unix.ByteSliceToString(uts.Release[:])}, nil
}
