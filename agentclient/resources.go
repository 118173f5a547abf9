package agentclient

import (
	"context"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// UpdateResources changes the limits of a container's guest cgroup.
func (c *Client) UpdateResources(ctx context.Context, id string, r *specs.LinuxResources) error {
	return c.call(ctx, protocol.MethodUpdateResources, protocol.UpdateResourcesRequest{ID: id, Resources: r}, nil)
}

// Stats reads a container's usage from its guest cgroup.
func (c *Client) Stats(ctx context.Context, id string) (*protocol.Stats, error) {
	var r protocol.Stats
	if err := c.call(ctx, protocol.MethodStats, protocol.StatsRequest{ID: id}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
