package shimctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agentclient/protocol"
	"github.com/skiff-oci/skiff/internal/unixsock"
)

// CallTimeout bounds a verb's wait for the shim; a start or kill goes to
// the guest and back, which is slow under TCG but never this slow.
const CallTimeout = 60 * time.Second

// Client calls the shim listening on Socket.
type Client struct{ Socket string }

func (c Client) dial(ctx context.Context) (*net.UnixConn, error) {
	conn, err := unixsock.Dial(ctx, c.Socket)
	if err != nil {
		return nil, fmt.Errorf("reach the sandbox's shim: %w", err)
	}
	return conn, nil
}

// call sends one request and decodes the one answer into rsp (nil: none
// expected beyond success).
func (c Client) call(ctx context.Context, method, container string, body, rsp any) error {
	ctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	req, err := newRequest(method, container, body)
	if err != nil {
		return err
	}
	if err := protocol.WriteFrame(conn, req); err != nil {
		return fmt.Errorf("send %s to the shim: %w", method, err)
	}
	if err := readResponse(conn, rsp); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	return nil
}

func newRequest(method, container string, body any) (*Request, error) {
	req := &Request{Method: method, Container: container}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		req.Body = b
	}
	return req, nil
}

// readResponse reads one answer: its error, or its body into v.
func readResponse(conn net.Conn, v any) error {
	var rsp Response
	if err := protocol.ReadFrame(conn, &rsp); err != nil {
		return fmt.Errorf("no answer from the shim: %w", err)
	}
	return decodeResponse(&rsp, v)
}

// decodeResponse returns the answer's error, or decodes its body into v.
func decodeResponse(rsp *Response, v any) error {
	if rsp.Error != "" {
		return errors.New(rsp.Error)
	}
	if v == nil || len(rsp.Body) == 0 {
		return nil
	}
	if err := json.Unmarshal(rsp.Body, v); err != nil {
		return fmt.Errorf("malformed answer from the shim: %w", err)
	}
	return nil
}

// Start lets a created container's process run.
func (c Client) Start(ctx context.Context, id string) error {
	return c.call(ctx, MethodStart, id, nil, nil)
}

// Kill sends a signal to the container's process, or to all its processes.
func (c Client) Kill(ctx context.Context, id string, signal int, all bool) error {
	return c.call(ctx, MethodKill, id, KillRequest{Signal: signal, All: all}, nil)
}

// Pause freezes the container's processes.
func (c Client) Pause(ctx context.Context, id string) error {
	return c.call(ctx, MethodPause, id, nil, nil)
}

// Resume thaws them.
func (c Client) Resume(ctx context.Context, id string) error {
	return c.call(ctx, MethodResume, id, nil, nil)
}

// Processes lists the container's processes as the guest sees them.
func (c Client) Processes(ctx context.Context, id string) ([]protocol.ProcessInfo, error) {
	var rsp ProcessesResponse
	err := c.call(ctx, MethodProcesses, id, nil, &rsp)
	return rsp.Processes, err
}

// Update sets the limits of the container's cgroup in the guest.
func (c Client) Update(ctx context.Context, id string, r UpdateRequest) error {
	return c.call(ctx, MethodUpdate, id, r, nil)
}

// Stats reads the container's usage.
func (c Client) Stats(ctx context.Context, id string) (*protocol.Stats, error) {
	var rsp StatsResponse
	if err := c.call(ctx, MethodStats, id, nil, &rsp); err != nil {
		return nil, err
	}
	if rsp.Stats == nil {
		return nil, errors.New("the shim sent no stats")
	}
	return rsp.Stats, nil
}

// Shutdown asks the shim to stop the sandbox's VM; the shim exits next.
func (c Client) Shutdown(ctx context.Context) error {
	return c.call(ctx, MethodShutdown, "", nil, nil)
}

// Exec is a process started through the shim, attached to its caller.
type Exec struct {
	conn *net.UnixConn
	// PID is the process's PID in the guest.
	PID int
}

// Exec starts a process (method MethodExec or MethodDebugConsole) in
// container id, with files as its stdin, stdout and stderr (none when a
// console socket gets its terminal), and returns once it runs.
func (c Client) Exec(ctx context.Context, method, id string, req ExecRequest, files []*os.File) (*Exec, error) {
	return c.attach(ctx, method, id, req, files)
}

// AddContainer creates container id in the sandbox, with files as its
// process's stdio, and returns once it exists; Wait then returns its exit
// status.
func (c Client) AddContainer(ctx context.Context, id string, req AddContainerRequest, files []*os.File) (*Exec, error) {
	return c.attach(ctx, MethodAddContainer, id, req, files)
}

// RemoveContainer removes container id from the sandbox.
func (c Client) RemoveContainer(ctx context.Context, id string) error {
	return c.call(ctx, MethodRemoveContainer, id, nil, nil)
}

// attach sends a request that starts a process with files as its stdio
// and returns once the shim says it exists.
func (c Client) attach(ctx context.Context, method, id string, body any, files []*os.File) (*Exec, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	r, err := newRequest(method, id, body)
	if err == nil {
		err = writeWithFiles(conn, r, files)
	}
	var started ExecStarted
	if err == nil {
		err = readResponse(conn, &started)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &Exec{conn: conn, PID: started.PID}, nil
}

// Wait passes the signals that arrive on signals on to the process and
// returns its exit status (128+N when killed by signal N).
func (e *Exec) Wait(signals <-chan os.Signal) (int, error) {
	defer e.conn.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case sig := <-signals:
				if n, ok := sig.(unix.Signal); ok {
					r, _ := newRequest(MethodSignal, "", SignalRequest{Signal: int(n)})
					protocol.WriteFrame(e.conn, r)
				}
			case <-stop:
				return
			}
		}
	}()
	var rsp Response
	if err := protocol.ReadFrame(e.conn, &rsp); err != nil {
		return 0, fmt.Errorf("lost the shim before the process exited: %w", err)
	}
	var exited ExecExited
	if err := decodeResponse(&rsp, &exited); err != nil {
		return 0, err
	}
	return exited.Status, nil
}

// Close lets the process run on unattached.
func (e *Exec) Close() { e.conn.Close() }
