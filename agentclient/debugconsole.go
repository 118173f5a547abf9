package agentclient

import (
	"context"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// DebugConsole starts a shell in the guest itself (not in a container)
// and returns its guest PID. Its stdio, exit status, signals and terminal
// size go through OpenStdio, WaitProcess, SignalProcess and
// ResizeTerminal with the request's ID and ExecID.
func (c *Client) DebugConsole(ctx context.Context, req *protocol.DebugConsoleRequest) (int, error) {
	var r protocol.DebugConsoleResponse
	if err := c.call(ctx, protocol.MethodDebugConsole, req, &r); err != nil {
		return 0, err
	}
	return r.PID, nil
}
