// Package agentclient is the host side of the agent protocol: it dials the
// guest's channel and turns method calls into protocol frames. Everything the
// guest sends is untrusted: frames are size-bounded by the protocol package
// and every call but WaitProcess runs under a deadline.
package agentclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/skiff-oci/skiff/internal/unixsock"

	"github.com/hashicorp/yamux"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// DefaultCallTimeout bounds a call whose context has no deadline.
const DefaultCallTimeout = 30 * time.Second

// Client is one yamux session to one agent.
type Client struct {
	conn net.Conn
	sess *yamux.Session
}

// Dial connects to the unix socket the VMM serves the agent channel on,
// retrying until ctx ends (the VMM creates the socket shortly after it
// starts), and opens a yamux session over it. It does not wait for the
// guest: use Ping for that.
func Dial(ctx context.Context, socket string) (*Client, error) {
	for {
		conn, err := unixsock.Dial(ctx, socket)
		if err == nil {
			return newClient(conn)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to agent channel %s: %w", socket, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// newClient opens a yamux session over conn, through the filter of what
// the guest may send (guestConn).
func newClient(conn net.Conn) (*Client, error) {
	sess, err := yamux.Client(newGuestConn(conn), protocol.YamuxConfig())
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("agent session: %w", err)
	}
	return &Client{conn: conn, sess: sess}, nil
}

// Close ends the session.
func (c *Client) Close() error {
	c.sess.Close()
	return c.conn.Close()
}

// Done is closed when the session ends (the VM died or the channel broke).
func (c *Client) Done() <-chan struct{} { return c.sess.CloseChan() }

// open starts a call on a new stream and reads its response into resp.
// The stream is returned still open (for OpenStdio); the caller closes it.
func (c *Client) open(ctx context.Context, method string, req, resp any, deadline bool) (*yamux.Stream, error) {
	r, err := protocol.NewRequest(method, req)
	if err != nil {
		return nil, err
	}
	st, err := c.sess.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("agent %s: open stream: %w", method, err)
	}
	if deadline {
		dl, ok := ctx.Deadline()
		if !ok {
			dl = time.Now().Add(DefaultCallTimeout)
		}
		st.SetDeadline(dl)
	}
	// A context cancelled mid-call must unblock the read too.
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		st.SetDeadline(time.Unix(1, 0))
		close(fired)
	})
	defer stop()

	if err := protocol.WriteFrame(st, r); err != nil {
		st.Close()
		return nil, fmt.Errorf("agent %s: send: %w", method, err)
	}
	var rsp protocol.Response
	if err := protocol.ReadFrame(st, &rsp); err != nil {
		st.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("agent %s: no reply: %w", method, err)
	}
	if rsp.Error != "" {
		st.Close()
		return nil, &Error{Method: method, Msg: rsp.Error}
	}
	if resp != nil && len(rsp.Body) > 0 {
		if err := json.Unmarshal(rsp.Body, resp); err != nil {
			st.Close()
			return nil, fmt.Errorf("agent %s: bad reply: %w", method, err)
		}
	}
	// A ctx ending just now must not leave the stream with a past
	// deadline: wait for its function if it already runs, then clear.
	if !stop() {
		<-fired
	}
	st.SetDeadline(time.Time{})
	return st, nil
}

func (c *Client) call(ctx context.Context, method string, req, resp any) error {
	st, err := c.open(ctx, method, req, resp, true)
	if err != nil {
		return err
	}
	return st.Close()
}

// Error is an error reported by the agent itself.
type Error struct {
	Method string
	Msg    string
}

func (e *Error) Error() string { return "guest: " + e.Msg }

// IsAgentError tells an error the agent reported from a transport failure.
func IsAgentError(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// Ping checks the agent answers and speaks our protocol version.
func (c *Client) Ping(ctx context.Context) (*protocol.PingResponse, error) {
	var r protocol.PingResponse
	if err := c.call(ctx, protocol.MethodPing, protocol.PingRequest{}, &r); err != nil {
		return nil, err
	}
	if r.Version != protocol.Version {
		return nil, fmt.Errorf("agent speaks protocol version %d, this skiff speaks %d: rebuild the guest image (make guest)", r.Version, protocol.Version)
	}
	return &r, nil
}

// CreateContainer creates the container, stopped before its first
// instruction, and returns its guest PID.
func (c *Client) CreateContainer(ctx context.Context, req *protocol.CreateContainerRequest) (int, error) {
	var r protocol.CreateContainerResponse
	if err := c.call(ctx, protocol.MethodCreateContainer, req, &r); err != nil {
		return 0, err
	}
	return r.PID, nil
}

// RemoveContainer kills what still runs of the container and forgets it.
func (c *Client) RemoveContainer(ctx context.Context, id string) error {
	return c.call(ctx, protocol.MethodRemoveContainer, protocol.RemoveContainerRequest{ID: id}, nil)
}

// StartContainer lets the container's process run.
func (c *Client) StartContainer(ctx context.Context, id string) error {
	return c.call(ctx, protocol.MethodStartContainer, protocol.StartContainerRequest{ID: id}, nil)
}

// SignalProcess sends sig to a process of the container (or all of them).
func (c *Client) SignalProcess(ctx context.Context, req protocol.SignalProcessRequest) error {
	return c.call(ctx, protocol.MethodSignalProcess, req, nil)
}

// WaitProcess blocks until the process exits; only ctx bounds it.
func (c *Client) WaitProcess(ctx context.Context, id, execID string) (int, error) {
	var r protocol.WaitProcessResponse
	st, err := c.open(ctx, protocol.MethodWaitProcess, protocol.WaitProcessRequest{ID: id, ExecID: execID}, &r, false)
	if err != nil {
		return 0, err
	}
	st.Close()
	return r.ExitStatus, nil
}

// OpenStdio attaches a stream to one stdio stream of a process. The caller
// owns the returned connection.
func (c *Client) OpenStdio(ctx context.Context, id, execID, stream string) (net.Conn, error) {
	return c.open(ctx, protocol.MethodOpenStdio, protocol.OpenStdioRequest{ID: id, ExecID: execID, Stream: stream}, nil, true)
}

// ExecProcess starts another process in the container and returns its
// guest PID.
func (c *Client) ExecProcess(ctx context.Context, req *protocol.ExecProcessRequest) (int, error) {
	var r protocol.ExecProcessResponse
	if err := c.call(ctx, protocol.MethodExecProcess, req, &r); err != nil {
		return 0, err
	}
	return r.PID, nil
}

// ResizeTerminal sets the window size of a process's terminal.
func (c *Client) ResizeTerminal(ctx context.Context, req protocol.ResizeTerminalRequest) error {
	return c.call(ctx, protocol.MethodResizeTerminal, req, nil)
}

// ListProcesses lists the processes of a container.
func (c *Client) ListProcesses(ctx context.Context, id string) ([]protocol.ProcessInfo, error) {
	var r protocol.ListProcessesResponse
	if err := c.call(ctx, protocol.MethodListProcesses, protocol.ListProcessesRequest{ID: id}, &r); err != nil {
		return nil, err
	}
	return r.Processes, nil
}

// PauseContainer freezes every process of a container.
func (c *Client) PauseContainer(ctx context.Context, id string) error {
	return c.call(ctx, protocol.MethodPauseContainer, protocol.PauseContainerRequest{ID: id}, nil)
}

// ResumeContainer thaws a paused container.
func (c *Client) ResumeContainer(ctx context.Context, id string) error {
	return c.call(ctx, protocol.MethodResumeContainer, protocol.ResumeContainerRequest{ID: id}, nil)
}

// Shutdown asks the guest to power off.
func (c *Client) Shutdown(ctx context.Context) error {
	return c.call(ctx, protocol.MethodShutdown, protocol.ShutdownRequest{}, nil)
}

// Reseed gives a guest restored from a template the host's clock and
// fresh entropy.
func (c *Client) Reseed(ctx context.Context, unixNano int64, entropy []byte) error {
	return c.call(ctx, protocol.MethodReseed, protocol.ReseedRequest{UnixNano: unixNano, Entropy: entropy}, nil)
}

// Warm has the agent of a waiting VM go once through a container's
// creation path (protocol.MethodWarm).
func (c *Client) Warm(ctx context.Context, req *protocol.WarmRequest) (*protocol.WarmResponse, error) {
	var r protocol.WarmResponse
	if err := c.call(ctx, protocol.MethodWarm, req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
