package sandbox

import (
	"context"
	"fmt"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/agentclient/protocol"
	"github.com/skiff-oci/skiff/sandbox/oci"
	"github.com/skiff-oci/skiff/sandbox/shimctl"
	"github.com/skiff-oci/skiff/sandbox/state"
)

// Start lets a created container's process run.
func (r *Runtime) Start(ctx context.Context, id string) error {
	c, err := r.load(id)
	if err != nil {
		return err
	}
	defer c.done()
	if err := state.CanStart(id, c.Status()); err != nil {
		return err
	}
	if err := c.sandbox.shim().Start(ctx, id); err != nil {
		return fmt.Errorf("start container %s: %w", id, err)
	}
	c.rec.Phase = state.PhaseStarted
	return c.dir.Write(c.rec)
}

// Kill sends sig to the container's process, or to all its processes.
func (r *Runtime) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	c, err := r.load(id)
	if err != nil {
		return err
	}
	defer c.done()
	if err := state.CanKill(id, c.Status()); err != nil {
		return err
	}
	if err := c.sandbox.shim().Kill(ctx, id, int(sig), all); err != nil {
		return fmt.Errorf("kill container %s: %w", id, err)
	}
	return nil
}

// Pause freezes every process of the container (its cgroup in the guest).
func (r *Runtime) Pause(ctx context.Context, id string) error {
	c, err := r.load(id)
	if err != nil {
		return err
	}
	defer c.done()
	if err := state.CanPause(id, c.Status()); err != nil {
		return err
	}
	if err := c.sandbox.shim().Pause(ctx, id); err != nil {
		return fmt.Errorf("pause container %s: %w", id, err)
	}
	return nil
}

// Resume thaws a paused container.
func (r *Runtime) Resume(ctx context.Context, id string) error {
	c, err := r.load(id)
	if err != nil {
		return err
	}
	defer c.done()
	if err := state.CanResume(id, c.Status()); err != nil {
		return err
	}
	if err := c.sandbox.shim().Resume(ctx, id); err != nil {
		return fmt.Errorf("resume container %s: %w", id, err)
	}
	return nil
}

// Processes lists the container's processes as the guest sees them.
func (r *Runtime) Processes(ctx context.Context, id string) ([]protocol.ProcessInfo, error) {
	c, err := r.load(id)
	if err != nil {
		return nil, err
	}
	status := c.Status()
	c.done()
	if status == oci.StatusStopped {
		return []protocol.ProcessInfo{}, nil // as runc: nothing runs
	}
	if err := state.CanPs(id, status); err != nil {
		return nil, err
	}
	ps, err := c.sandbox.shim().Processes(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("list processes of container %s: %w", id, err)
	}
	if ps == nil {
		return []protocol.ProcessInfo{}, nil
	}
	return ps, nil
}

// Update changes the limits of a container's cgroup in the guest. The VM
// keeps the size it was booted with: a limit above it caps nothing more.
func (r *Runtime) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	c, err := r.load(id)
	if err != nil {
		return err
	}
	defer c.done()
	if err := state.CanUpdate(id, c.Status()); err != nil {
		return err
	}
	if err := c.sandbox.shim().Update(ctx, id, shimctl.UpdateRequest{Resources: res}); err != nil {
		return fmt.Errorf("update container %s: %w", id, err)
	}
	return nil
}

// Stats reads a container's usage from its guest cgroup.
func (r *Runtime) Stats(ctx context.Context, id string) (*protocol.Stats, error) {
	c, err := r.load(id)
	if err != nil {
		return nil, err
	}
	status := c.Status()
	c.done()
	if err := state.CanStats(id, status); err != nil {
		return nil, err
	}
	st, err := c.sandbox.shim().Stats(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("stats of container %s: %w", id, err)
	}
	return st, nil
}

// Events calls emit with the container's stats every interval until it
// stops (then it returns nil), emit fails, or ctx ends.
func (r *Runtime) Events(ctx context.Context, id string, interval time.Duration, emit func(*protocol.Stats) error) error {
	if interval <= 0 {
		return fmt.Errorf("events: the interval must be positive, got %v", interval)
	}
	for first := true; ; first = false {
		st, err := r.Stats(ctx, id)
		if err != nil {
			if !first && r.stopsWithin(id, 10*time.Second) {
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
		if s, err := r.State(id); err != nil || s.Status == oci.StatusStopped {
			return nil
		}
	}
}

// stopsWithin reports whether the container is, or within d becomes,
// stopped (or deleted): its shim outlives the guest by a teardown.
func (r *Runtime) stopsWithin(id string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		s, err := r.State(id)
		if err != nil || s.Status == oci.StatusStopped {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// State reports a container's state, computed live.
func (r *Runtime) State(id string) (*oci.State, error) {
	if err := state.ValidateID(id); err != nil {
		return nil, err
	}
	c, err := r.read(r.root.Container(id))
	if err != nil {
		return nil, err
	}
	return c.ociState(), nil
}

// ociState is the container's state document.
func (c *Container) ociState() *oci.State {
	status := c.Status()
	ann := map[string]string{oci.SandboxAnnotation: c.rec.Sandbox}
	for k, v := range c.rec.Annotations {
		ann[k] = v
	}
	o := &oci.State{
		OCIVersion:  oci.Version,
		ID:          c.rec.ID,
		Status:      status,
		Bundle:      c.rec.Bundle,
		Rootfs:      c.rec.Rootfs,
		Created:     c.rec.Created,
		Annotations: ann,
	}
	if status != oci.StatusStopped {
		o.PID = c.rec.PID
	}
	return o
}

// List reports every container that finished being created.
func (r *Runtime) List() ([]*oci.State, error) {
	ids, err := r.root.IDs()
	if err != nil {
		return nil, err
	}
	var out []*oci.State
	for _, id := range ids {
		c, err := r.read(r.root.Container(id))
		if err != nil || c.rec.Phase == state.PhaseCreating {
			continue
		}
		out = append(out, c.ociState())
	}
	return out, nil
}
