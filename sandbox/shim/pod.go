package shim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/agentclient"
	"github.com/skiff-oci/skiff/agentclient/protocol"
	"github.com/skiff-oci/skiff/sandbox/hostfs"
	"github.com/skiff-oci/skiff/sandbox/oci"
	"github.com/skiff-oci/skiff/sandbox/shimctl"
)

// A pod's other containers: created in the sandbox's VM on the request of
// each one's own host process (which passes its stdio and waits for the
// exit status), their files bind-mounted under the sandbox's pod/ area.

// AddContainer creates container id of the pod in the VM, relays its
// stdio to files (or a console), answers once it exists and again with
// its exit status.
func (s *shim) AddContainer(id string, r shimctl.AddContainerRequest, files []*os.File, x *shimctl.ExecConn) {
	defer shimctl.CloseFiles(files)
	ctx, cancel := context.WithTimeout(context.Background(), agentclient.DefaultCallTimeout)
	defer cancel()
	c, pio, err := s.addContainer(ctx, id, r, files)
	if err != nil {
		s.log.Warn("add container to the pod", "container", id, "error", err)
		x.Fail(err)
		return
	}
	if err := x.Started(c.guestPID); err != nil {
		s.log.Debug("the container's host process went away", "container", id, "error", err)
	}
	go x.Signals(func(sig int) {
		ctx, cancel := context.WithTimeout(context.Background(), agentclient.DefaultCallTimeout)
		defer cancel()
		if err := s.vm.Agent.SignalProcess(ctx, protocol.SignalProcessRequest{ID: id, Signal: sig}); err != nil {
			s.log.Debug("forward signal", "container", id, "error", err)
		}
	})
	status, err := s.waitProcess(c, "")
	pio.finish()
	waitTimeout(&c.outputs, 5*time.Second)
	if err != nil {
		x.Fail(fmt.Errorf("lost container %s: %v", id, err))
		return
	}
	x.Exited(status)
}

// addContainer creates the container and attaches its stdio; on error
// nothing of it is left in the guest or on the host.
func (s *shim) addContainer(ctx context.Context, id string, r shimctl.AddContainerRequest, files []*os.File) (_ *container, _ *procIO, err error) {
	if s.guestDirs == "" {
		return nil, nil, fmt.Errorf("sandbox %s is not a pod's: it holds no other container", s.dir.ID())
	}
	c, b, err := s.load(id, r.ConsoleSocket)
	if err != nil {
		return nil, nil, err
	}
	created := false
	defer func() {
		if err != nil {
			s.forget(id, created)
		}
	}()
	if c.rec.Sandbox != s.dir.ID() {
		return nil, nil, fmt.Errorf("container %s belongs to sandbox %s, not %s", id, c.rec.Sandbox, s.dir.ID())
	}
	if err := s.fits(id, b.Spec); err != nil {
		return nil, nil, err
	}
	plan, scratch, _, err := s.planFiles(id, b, func(b *oci.Bundle) (*hostfs.Plan, error) {
		return hostfs.PlanPodContainer(string(s.dir), id, b, s.guestDirs)
	})
	if err != nil {
		return nil, nil, err
	}
	// On error, forget (deferred) gives back the slot this takes.
	if err := s.planRootDisk(id, b.Rootfs, plan); err != nil {
		return nil, nil, err
	}
	if err := plan.MountPodBinds(); err != nil {
		return nil, nil, err
	}
	if err := s.plugRootDisk(ctx, id, plan); err != nil {
		return nil, nil, err
	}
	if err := s.createInGuest(ctx, c, plan, scratch, s.main.id()); err != nil {
		return nil, nil, err
	}
	created = true
	in, out, errf, term, err := execStdio(shimctl.ExecRequest{Process: b.Spec.Process, ConsoleSocket: r.ConsoleSocket}, files)
	if err != nil {
		return nil, nil, err
	}
	pio, err := s.relayProcess(ctx, c, "", c.terminal, in, out, errf, term, &c.outputs)
	if err != nil {
		return nil, nil, fmt.Errorf("attach to the container's stdio: %w", err)
	}
	return c, pio, nil
}

// fits refuses a pod's container whose limits the pod's VM cannot give:
// its size was set for the pod when the sandbox was created.
func (s *shim) fits(id string, spec *specs.Spec) error {
	if spec.Linux == nil || spec.Linux.Resources == nil {
		return nil
	}
	r := spec.Linux.Resources
	if r.Memory != nil && r.Memory.Limit != nil && *r.Memory.Limit > 0 {
		if want := (*r.Memory.Limit + 1<<20 - 1) >> 20; want > int64(s.memMiB-s.cfg.Hypervisor.MemoryOverhead) {
			return fmt.Errorf("container %s asks for %d MiB of memory; its pod's VM has %d MiB, %d of them for the guest itself (size the pod for it, or raise hypervisor.default_memory)", id, want, s.memMiB, s.cfg.Hypervisor.MemoryOverhead)
		}
	}
	if r.CPU != nil && r.CPU.Quota != nil && *r.CPU.Quota > 0 {
		period := int64(100000)
		if r.CPU.Period != nil && *r.CPU.Period > 0 {
			period = int64(*r.CPU.Period)
		}
		if want := (*r.CPU.Quota + period - 1) / period; want > int64(s.vcpus) {
			return fmt.Errorf("container %s asks for %d CPUs; its pod's VM has %d vCPUs (size the pod for it, or raise hypervisor.default_vcpus)", id, want, s.vcpus)
		}
	}
	return nil
}

// RemoveContainer removes a pod's container from the guest and its binds
// from the host.
func (s *shim) RemoveContainer(ctx context.Context, id string) error {
	if id == s.main.id() {
		return errors.New("the sandbox's own container goes with the sandbox: delete it, not remove it")
	}
	if _, err := s.container(id); err != nil {
		return err
	}
	return s.forget(id, true)
}

// forget removes container id from the guest (when created there), its
// binds and its entry.
func (s *shim) forget(id string, inGuest bool) error {
	var errs []error
	if inGuest {
		ctx, cancel := context.WithTimeout(context.Background(), agentclient.DefaultCallTimeout)
		defer cancel()
		if err := s.vm.Agent.RemoveContainer(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("remove container %s from the guest: %w", id, err))
		}
	}
	s.unplugRootDisk(id)
	if err := hostfs.RemovePodContainer(string(s.dir), id); err != nil {
		errs = append(errs, err)
	}
	s.mu.Lock()
	delete(s.containers, id)
	s.mu.Unlock()
	return errors.Join(errs...)
}
