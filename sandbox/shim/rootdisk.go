package shim

import (
	"context"
	"errors"
	"time"

	"github.com/skiff-oci/skiff/hypervisor"
	"github.com/skiff-oci/skiff/sandbox/hostfs"
)

// A pod's container whose rootfs is a block device gets it as a disk
// plugged into one of the VM's hot-plug slots (hypervisor.HotplugSlots),
// and the slot back when it is removed. The sandbox's own container, if
// its rootfs is a disk, took slot 0 when its VM came from a template or
// the pool (factory.plugDisks); a cold-booted VM has it on its command
// line, and slot 0 stays unused then.

// unplugTimeout bounds the wait for the guest to let a removed
// container's disk go; its slot stays taken if it does not.
const unplugTimeout = 30 * time.Second

// slotDisk is what a hot-plug slot holds.
type slotDisk struct {
	container string
	disk      hypervisor.Disk
}

// planRootDisk makes a pod container's rootfs a disk in plan if it is a
// block device's filesystem (hostfs.Plan.UsePodRootDisk) and a hot-plug
// slot is free, which it takes for container id; otherwise the rootfs
// comes through the pod's share. unplugRootDisk gives the slot back.
func (s *shim) planRootDisk(id, rootfs string, plan *hostfs.Plan) error {
	if !s.cfg.Storage.RootfsDisk {
		return nil
	}
	slot := s.takeSlot(id)
	if slot < 0 {
		return nil
	}
	err := plan.UsePodRootDisk(rootfs, slot)
	if err == nil && len(plan.Disks) == 0 {
		s.freeSlot(slot) // a shared rootfs: the slot is for others
	}
	return err
}

// takeSlot reserves a free slot for container id, or returns -1: no
// slot free, or a VM that takes no disk while it runs.
func (s *shim) takeSlot(id string) int {
	if _, ok := s.vm.Hypervisor.(hypervisor.DiskPlugger); !ok || !hypervisor.CanHotplugDisk(s.machine) {
		return -1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.slots {
		if i == 0 && s.mainDisk {
			continue
		}
		if s.slots[i] == nil {
			s.slots[i] = &slotDisk{container: id}
			return i
		}
	}
	return -1
}

// plugRootDisk plugs the disk of plan (planRootDisk's) into the slot
// container id took. The slot stays the container's until
// unplugRootDisk, whatever happens.
func (s *shim) plugRootDisk(ctx context.Context, id string, plan *hostfs.Plan) error {
	if len(plan.Disks) == 0 {
		return nil
	}
	slot := s.slotOf(id)
	release, err := plan.TakeOverRootDisk()
	if err != nil {
		return err
	}
	defer release() // the VM holds the device once plugged
	d := plan.Disks[0]
	if err := s.vm.Hypervisor.(hypervisor.DiskPlugger).PlugDisk(ctx, d, slot); err != nil {
		return err
	}
	s.mu.Lock()
	s.slots[slot].disk = d
	s.mu.Unlock()
	s.log.Debug("rootfs disk plugged in", "container", id, "slot", slot, "device", d.Path)
	return nil
}

// slotOf is the slot container id took, -1 if none.
func (s *shim) slotOf(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, sd := range s.slots {
		if sd != nil && sd.container == id {
			return i
		}
	}
	return -1
}

// unplugRootDisk takes container id's disk away, in the background (the
// guest may take seconds to let a PCIe device go), and frees its slot
// once it is gone. The container must be gone from the guest.
func (s *shim) unplugRootDisk(id string) {
	slot := s.slotOf(id)
	if slot < 0 {
		return
	}
	s.mu.Lock()
	d := s.slots[slot].disk
	s.mu.Unlock()
	if d.ID == "" { // reserved, never plugged
		s.freeSlot(slot)
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), unplugTimeout)
		defer cancel()
		err := s.vm.Hypervisor.(hypervisor.DiskPlugger).UnplugDisk(ctx, d, slot)
		if err != nil && !errors.Is(err, context.Canceled) {
			s.log.Warn("unplug a removed container's rootfs disk; its slot stays taken", "container", id, "error", err)
			return
		}
		s.freeSlot(slot)
		s.log.Debug("rootfs disk unplugged", "container", id, "slot", slot)
	}()
}

func (s *shim) freeSlot(slot int) {
	s.mu.Lock()
	s.slots[slot] = nil
	s.mu.Unlock()
}
