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
//
// A restored VM comes with its agent's client: the clone was reseeded,
// its first answer. A cold-booted one comes without.
func (s *shim) startVM(ctx context.Context, c hypervisor.Config) (hypervisor.Hypervisor, *agentclient.Client, bool, error) {
	if s.cfg.Factory.Template && templateEligible(c) {
		vm, agent, err := s.restore(ctx, c)
		if err == nil {
			return vm, agent, true, nil
		}
		var timeout *guestTimeoutError
		if errors.As(err, &timeout) {
			return nil, nil, false, err
		}
		if errors.Is(err, errTemplateBusy) {
			s.log.Debug("VM template being built elsewhere; booting cold")
		} else {
			s.log.Warn("VM template unusable; booting cold", "error", err)
		}
	}
	vm, err := hypervisor.NewQEMU(c)
	if err != nil {
		return nil, nil, false, err
	}
	if err := vm.Start(ctx); err != nil {
		return nil, nil, false, err
	}
	return vm, nil, false, nil
}

// restore starts a clone of the template, loads its state and reseeds
// the guest.
func (s *shim) restore(ctx context.Context, c hypervisor.Config) (hypervisor.Hypervisor, *agentclient.Client, error) {
	f := Factory{Dir: s.cfg.Factory.Dir}
	t, err := f.Ensure(ctx, c, s.cfg.Hypervisor.BootTimeoutDuration())
	if err != nil {
		return nil, nil, err
	}
	c = withSlots(c, t.empty())
	c.MemoryFile, c.MemoryShared, c.Incoming = t.memory(), false, true
	// Slots the sandbox does not fill get taps too: the device must offer
	// what the template negotiated. They stay open until teardown.
	release, err := spareTaps(c.NetDevices)
	if err != nil {
		return nil, nil, err
	}
	vm, err := t.startClone(ctx, c)
	if err != nil {
		release()
		return nil, nil, err
	}
	agent, err := t.answer(ctx, vm, c.AgentSocket, false)
	if err != nil {
		vm.Stop(context.Background(), vmStopTimeout)
		release()
		return nil, nil, err
	}
	s.releaseSpare = release
	s.log.Debug("VM restored from template", "template", t.Dir)
	s.log.Debug("guest reseeded")
	return vm, agent, nil
}

// cloneAnswerTimeout bounds the wait for a clone's first answer, about
// 0.1 s under TCG: a clone silent for longer is given up on.
const cloneAnswerTimeout = 10 * time.Second

// answer connects to a clone's agent (checking its protocol version first
// when ping) and reseeds the guest: its first answer. A clone that dies
// instead (its template's memory or state changed behind skiff's back, so
// the guest crashed) removes the template: every clone would. One that is
// only slow leaves it, since a busy host is no reason to rebuild.
func (t Template) answer(ctx context.Context, vm hypervisor.Hypervisor, socket string, ping bool) (*agentclient.Client, error) {
	actx, cancel := context.WithTimeout(ctx, cloneAnswerTimeout)
	defer cancel()
	exited := make(chan struct{})
	go func() {
		vm.Wait()
		close(exited)
	}()
	go func() {
		select {
		case <-exited:
			cancel()
		case <-actx.Done():
		}
	}()
	agent, err := agentclient.Dial(actx, socket)
	if err == nil && ping {
		_, err = agent.Ping(actx)
	}
	if err == nil {
		err = reseed(actx, agent)
	}
	if err == nil {
		return agent, nil
	}
	if agent != nil {
		agent.Close()
	}
	select {
	case <-exited:
	default:
		if actx.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("the restored guest did not answer within %v: %w", cloneAnswerTimeout, err)
		}
	}
	if ctx.Err() == nil {
		t.remove()
	}
	return nil, fmt.Errorf("the restored guest failed: %w", err)
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
