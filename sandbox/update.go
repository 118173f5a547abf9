package sandbox

import (
	"context"
	"fmt"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// Update changes the limits of a container's cgroup in the guest. The VM
// keeps the size it was booted with: a limit above it caps nothing more.
func (s *Store) Update(ctx context.Context, id string, r *specs.LinuxResources) error {
	d, l, st, err := s.open(id)
	if err != nil {
		return err
	}
	defer l.Unlock()
	if err := canUpdate(id, d.status(st)); err != nil {
		return err
	}
	if err := shimCall(ctx, d, ctlRequest{Op: ctlUpdate, Resources: r}); err != nil {
		return fmt.Errorf("update container %s: %w", id, err)
	}
	return nil
}

// Stats reads a container's usage from its guest cgroup.
func (s *Store) Stats(ctx context.Context, id string) (*protocol.Stats, error) {
	d, l, st, err := s.open(id)
	if err != nil {
		return nil, err
	}
	status := d.status(st)
	l.Unlock()
	if err := canStats(id, status); err != nil {
		return nil, err
	}
	rsp, err := shimQuery(ctx, d, ctlRequest{Op: ctlStats})
	if err != nil {
		return nil, fmt.Errorf("stats of container %s: %w", id, err)
	}
	if rsp.Stats == nil {
		return nil, fmt.Errorf("stats of container %s: the shim sent none", id)
	}
	return rsp.Stats, nil
}

// Events calls emit with the container's stats every interval until it
// stops (then it returns nil), emit fails, or ctx ends.
func (s *Store) Events(ctx context.Context, id string, interval time.Duration, emit func(*protocol.Stats) error) error {
	if interval <= 0 {
		return fmt.Errorf("events: the interval must be positive, got %v", interval)
	}
	for first := true; ; first = false {
		st, err := s.Stats(ctx, id)
		if err != nil {
			if !first && s.stopsWithin(id, 10*time.Second) {
				return nil // it stopped meanwhile: the VM went first
			}
			return err
		}
		if err := emit(st); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
		if state, err := s.State(id); err != nil || state.Status == StatusStopped {
			return nil
		}
	}
}

// resourceOp serves update and stats in the shim.
func (s *shim) resourceOp(ctx context.Context, req ctlRequest) ctlResponse {
	var rsp ctlResponse
	var err error
	switch req.Op {
	case ctlUpdate:
		err = s.agent.UpdateResources(ctx, s.st.ID, req.Resources)
	case ctlStats:
		rsp.Stats, err = s.agent.Stats(ctx, s.st.ID)
	}
	if err != nil {
		rsp.Error = err.Error()
	}
	return rsp
}

// stopsWithin reports whether the container is, or within d becomes,
// stopped (or deleted): its shim outlives the guest by a teardown.
func (s *Store) stopsWithin(id string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		state, err := s.State(id)
		if err != nil || state.Status == StatusStopped {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}
