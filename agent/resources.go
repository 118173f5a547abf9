package agent

import (
	"encoding/json"
	"fmt"
	"net"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

func init() {
	handlers[protocol.MethodUpdateResources] = (*Agent).updateResources
	handlers[protocol.MethodStats] = (*Agent).stats
}

func (a *Agent) updateResources(body json.RawMessage) (any, func(net.Conn), error) {
	var req protocol.UpdateResourcesRequest
	if err := decode(body, &req); err != nil {
		return nil, nil, err
	}
	c, err := a.lookup(req.ID)
	if err != nil {
		return nil, nil, err
	}
	if err := c.c.UpdateResources(req.Resources); err != nil {
		return nil, nil, fmt.Errorf("container %s: update resources: %w", req.ID, err)
	}
	return protocol.Empty{}, nil, nil
}

func (a *Agent) stats(body json.RawMessage) (any, func(net.Conn), error) {
	var req protocol.StatsRequest
	if err := decode(body, &req); err != nil {
		return nil, nil, err
	}
	c, err := a.lookup(req.ID)
	if err != nil {
		return nil, nil, err
	}
	s, err := c.c.Stats()
	if err != nil {
		return nil, nil, fmt.Errorf("container %s: %w", req.ID, err)
	}
	return s, nil, nil
}
