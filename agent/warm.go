package agent

import (
	"encoding/json"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agent/container"
	"github.com/skiff-oci/skiff/agentclient/protocol"
)

func init() {
	handlers[protocol.MethodWarm] = (*Agent).warm
}

// warmDir is where warm mounts its share for a moment.
const warmDir = "/run/skiff/warm"

// warm goes once through what creating a container does in the guest, so
// that a pooled VM has the guest code of that path translated before its
// sandbox comes (protocol.MethodWarm). Decoding the request has already
// gone through the spec's types.
func (a *Agent) warm(body json.RawMessage) (any, func(net.Conn), error) {
	var req protocol.WarmRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, nil, fmt.Errorf("bad request: %w", err)
	}
	if req.Spec != nil {
		if err := container.Warm(req.Spec); err != nil {
			return nil, nil, err
		}
	}
	if req.Share.Tag == "" {
		return protocol.Empty{}, nil, nil
	}
	s := req.Share
	s.GuestPath = warmDir
	if err := validateShare(s); err != nil {
		return nil, nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, busy := a.shares[s.GuestPath]; busy || len(a.containers) > 0 {
		return nil, nil, fmt.Errorf("warm: the guest is in use")
	}
	if err := mountShare(s); err != nil {
		return nil, nil, err
	}
	os.ReadDir(s.GuestPath)
	if err := unix.Unmount(s.GuestPath, 0); err != nil {
		unix.Unmount(s.GuestPath, unix.MNT_DETACH)
	}
	os.Remove(s.GuestPath)
	return protocol.Empty{}, nil, nil
}
