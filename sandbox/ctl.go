package sandbox

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// The control protocol between short-lived verbs and the shim: one
// request and one response frame per connection on the shim's socket in the
// state directory, framed like the agent protocol.

const (
	ctlStart    = "start"
	ctlKill     = "kill"
	ctlShutdown = "shutdown"
)

type ctlRequest struct {
	Op     string `json:"op"`
	Signal int    `json:"signal,omitempty"`
	All    bool   `json:"all,omitempty"`
}

type ctlResponse struct {
	Error string `json:"error,omitempty"`
}

// ctlTimeout bounds a verb's wait for the shim; a start or kill goes to the
// guest and back, which is slow under TCG but never this slow.
const ctlTimeout = 60 * time.Second

// shimCall sends one request to the shim of d.
func shimCall(ctx context.Context, d Dir, req ctlRequest) error {
	ctx, cancel := context.WithTimeout(ctx, ctlTimeout)
	defer cancel()
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "unix", d.ShimSocket())
	if err != nil {
		return fmt.Errorf("reach the container's shim: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if err := protocol.WriteFrame(conn, req); err != nil {
		return fmt.Errorf("send %s to shim: %w", req.Op, err)
	}
	var rsp ctlResponse
	if err := protocol.ReadFrame(conn, &rsp); err != nil {
		return fmt.Errorf("%s: no answer from shim: %w", req.Op, err)
	}
	if rsp.Error != "" {
		return fmt.Errorf("%s", rsp.Error)
	}
	return nil
}
