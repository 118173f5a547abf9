package sandbox

import (
	"context"
	"fmt"
	"strings"

	"github.com/skiff-oci/skiff/config"
	"github.com/skiff-oci/skiff/hypervisor"
)

// baseVMConfig is the part of a VM's configuration that comes from skiff's
// configuration alone (not from a container): what sandboxes and their
// template share. It resolves the accelerator (cached in stateRoot) and
// says why it chose it.
func baseVMConfig(ctx context.Context, cfg *config.Config, stateRoot string) (hypervisor.Config, string, error) {
	h := cfg.Hypervisor
	accel, why, err := hypervisor.ResolveAccel(ctx, hypervisor.Accel(h.Accel), hypervisor.ProbeConfig{
		Binary: h.Path, Kernel: h.Kernel, Initrd: h.Initrd, Machine: h.MachineType,
	}, stateRoot)
	if err != nil {
		return hypervisor.Config{}, "", fmt.Errorf("choose accelerator: %w", err)
	}
	params := strings.Fields(h.KernelParams)
	if cfg.Runtime.GuestDebug {
		params = append(params, "skiff.debug=1")
	}
	return hypervisor.Config{
		Binary:       h.Path,
		Kernel:       h.Kernel,
		Initrd:       h.Initrd,
		KernelParams: params,
		Machine:      h.MachineType,
		Accel:        accel,
		VCPUs:        h.DefaultVCPUs,
		MemoryMiB:    h.DefaultMemory,
	}, why, nil
}

// FactoryInit builds the VM template of cfg now (skiff factory init), so
// that no sandbox pays for it.
func FactoryInit(ctx context.Context, cfg *config.Config, stateRoot string) (Template, error) {
	if err := checkGuest(cfg); err != nil {
		return Template{}, err
	}
	base, _, err := baseVMConfig(ctx, cfg, stateRoot)
	if err != nil {
		return Template{}, err
	}
	return Factory{Dir: cfg.Factory.Dir}.Ensure(ctx, base, cfg.Hypervisor.BootTimeoutDuration())
}
