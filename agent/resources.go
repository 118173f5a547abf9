package agent

import (
	"fmt"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

func (a *Agent) updateResources(req *protocol.UpdateResourcesRequest) error {
	c, err := a.lookup(req.ID)
	if err != nil {
		return err
	}
	if err := c.c.UpdateResources(req.Resources); err != nil {
		return fmt.Errorf("container %s: update resources: %w", req.ID, err)
	}
	return nil
}

func (a *Agent) stats(req *protocol.StatsRequest) (*protocol.Stats, error) {
	c, err := a.lookup(req.ID)
	if err != nil {
		return nil, err
	}
	s, err := c.c.Stats()
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", req.ID, err)
	}
	return s, nil
}
