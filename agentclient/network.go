package agentclient

import (
	"context"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// ConfigureNetwork sets up the guest's interfaces, addresses, routes and
// neighbours. Call it after Ping and before CreateContainer.
func (c *Client) ConfigureNetwork(ctx context.Context, req *protocol.ConfigureNetworkRequest) error {
	return c.call(ctx, protocol.MethodConfigureNetwork, req, nil)
}
