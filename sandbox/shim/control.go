package shim

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/skiff-oci/skiff/agentclient/protocol"
	"github.com/skiff-oci/skiff/sandbox/oci"
	"github.com/skiff-oci/skiff/sandbox/shimctl"
)

// The shim's side of shimctl: one method per verb, each on a container of
// the sandbox.

// container returns the sandbox's container id.
func (s *shim) container(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %q is not in sandbox %s", id, s.dir.ID())
	}
	return c, nil
}

// Start runs the startContainer hooks, then lets the process run.
func (s *shim) Start(ctx context.Context, id string) error {
	c, err := s.container(id)
	if err != nil {
		return err
	}
	if err := oci.RunHooks("startContainer", c.hooks.StartContainer, s.hookState(c, oci.StatusCreated)); err != nil {
		// The spec: a failed startContainer hook stops the container.
		go s.stopVM(context.Background())
		return err
	}
	if err := s.vm.Agent.StartContainer(ctx, id); err != nil {
		return err
	}
	if err := touch(c.dir.StartedMarker()); err != nil {
		return err
	}
	oci.WarnHooks("poststart", c.hooks.Poststart, s.hookState(c, oci.StatusRunning))
	return nil
}

// Kill signals the container's process, or all its processes.
func (s *shim) Kill(ctx context.Context, id string, r shimctl.KillRequest) error {
	if _, err := s.container(id); err != nil {
		return err
	}
	return s.vm.Agent.SignalProcess(ctx, protocol.SignalProcessRequest{ID: id, Signal: r.Signal, All: r.All})
}

// Pause freezes the container's cgroup in the guest; the marker records
// it, written by the shim, not by a verb that might die half-way.
func (s *shim) Pause(ctx context.Context, id string) error {
	c, err := s.container(id)
	if err != nil {
		return err
	}
	if err := s.vm.Agent.PauseContainer(ctx, id); err != nil {
		return err
	}
	return touch(c.dir.PausedMarker())
}

// Resume thaws it.
func (s *shim) Resume(ctx context.Context, id string) error {
	c, err := s.container(id)
	if err != nil {
		return err
	}
	if err := s.vm.Agent.ResumeContainer(ctx, id); err != nil {
		return err
	}
	if err := os.Remove(c.dir.PausedMarker()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Processes lists the container's processes in the guest.
func (s *shim) Processes(ctx context.Context, id string) (*shimctl.ProcessesResponse, error) {
	if _, err := s.container(id); err != nil {
		return nil, err
	}
	ps, err := s.vm.Agent.ListProcesses(ctx, id)
	if err != nil {
		return nil, err
	}
	return &shimctl.ProcessesResponse{Processes: ps}, nil
}

// Update sets the limits of the container's guest cgroup.
func (s *shim) Update(ctx context.Context, id string, r shimctl.UpdateRequest) error {
	if _, err := s.container(id); err != nil {
		return err
	}
	return s.vm.Agent.UpdateResources(ctx, id, r.Resources)
}

// Stats reads the container's guest cgroup.
func (s *shim) Stats(ctx context.Context, id string) (*shimctl.StatsResponse, error) {
	if _, err := s.container(id); err != nil {
		return nil, err
	}
	st, err := s.vm.Agent.Stats(ctx, id)
	if err != nil {
		return nil, err
	}
	return &shimctl.StatsResponse{Stats: st}, nil
}

// Shutdown stops the VM: the sandbox is being deleted.
func (s *shim) Shutdown(ctx context.Context) { s.stopVM(ctx) }
