package sandbox

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/skiff-oci/skiff/agentclient"
	"github.com/skiff-oci/skiff/hypervisor"
)

// startVM starts the sandbox's VM: restored from the VM template of its
// configuration when templates are on and the sandbox fits one, else booted
// cold. A template that cannot be built or restored is a warning and a
// cold boot, never a failure. It reports whether the VM was restored.
func (s *shim) startVM(ctx context.Context, c hypervisor.Config) (hypervisor.Hypervisor, bool, error) {
	if s.cfg.Factory.Template && templateEligible(c) {
		vm, err := s.restore(ctx, c)
		if err == nil {
			return vm, true, nil
		}
		var timeout *guestTimeoutError
		if errors.As(err, &timeout) {
			return nil, false, err
		}
		if errors.Is(err, errTemplateBusy) {
			s.log.Debug("VM template being built elsewhere; booting cold")
		} else {
			s.log.Warn("VM template unusable; booting cold", "error", err)
		}
	}
	vm, err := hypervisor.NewQEMU(c)
	if err != nil {
		return nil, false, err
	}
	if err := vm.Start(ctx); err != nil {
		return nil, false, err
	}
	return vm, false, nil
}

// restore starts a clone of the template and loads its state.
func (s *shim) restore(ctx context.Context, c hypervisor.Config) (hypervisor.Hypervisor, error) {
	f := Factory{Dir: s.cfg.Factory.Dir}
	t, err := f.Ensure(ctx, c, s.cfg.Hypervisor.BootTimeoutDuration())
	if err != nil {
		return nil, err
	}
	c = withSlots(c, t.empty())
	c.MemoryFile, c.MemoryShared, c.Incoming = t.memory(), false, true
	// Slots the sandbox does not fill get taps too: the device must offer
	// what the template negotiated. They stay open until teardown.
	release, err := spareTaps(c.NetDevices)
	if err != nil {
		return nil, err
	}
	vm, err := t.startClone(ctx, c)
	if err != nil {
		release()
		return nil, err
	}
	s.releaseSpare = release
	s.log.Debug("VM restored from template", "template", t.Dir)
	return vm, nil
}

// reseed gives a restored guest the host's clock and fresh entropy: every
// clone of a template starts with the template's random state.
func reseed(ctx context.Context, agent *agentclient.Client) error {
	entropy := make([]byte, 64)
	if _, err := rand.Read(entropy); err != nil {
		return fmt.Errorf("entropy for the guest: %w", err)
	}
	if err := agent.Reseed(ctx, time.Now().UnixNano(), entropy); err != nil {
		return fmt.Errorf("reseed restored guest: %w", err)
	}
	return nil
}
