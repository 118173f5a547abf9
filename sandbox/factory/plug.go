package factory

import (
	"context"
	"errors"

	"github.com/skiff-oci/skiff/hypervisor"
)

// pluggable splits c into what a clone of a template can be started with
// and the block devices (a sandbox's rootfs disk) to plug into it once it
// runs (hypervisor.DiskPlugger): a template's devices are fixed when it is
// saved. On a machine without the hot-plug slot nothing is split, and c
// (with more disks than a template has) boots cold.
func pluggable(c hypervisor.Config) (clone hypervisor.Config, plug []hypervisor.Disk) {
	if !hypervisor.CanHotplugDisk(c.Machine) {
		return c, nil
	}
	clone = c
	clone.Disks = nil
	for _, d := range c.Disks {
		if d.Block {
			plug = append(plug, d)
		} else {
			clone.Disks = append(clone.Disks, d)
		}
	}
	return clone, plug
}

// plugDisks adds disks to the running vm, in its first slots; on error it
// stops vm (Start's promise: no VM runs after an error).
func plugDisks(ctx context.Context, vm *VM, disks []hypervisor.Disk) error {
	if len(disks) == 0 {
		return nil
	}
	err := errors.New("this hypervisor cannot add a disk to a running VM")
	if p, ok := vm.Hypervisor.(hypervisor.DiskPlugger); ok {
		for i, d := range disks {
			if err = p.PlugDisk(ctx, d, i); err != nil {
				break
			}
		}
	}
	if err != nil {
		vm.Stop(context.Background(), stopTimeout)
	}
	return err
}
