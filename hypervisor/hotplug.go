package hypervisor

import (
	"context"
	"fmt"
)

// Disks added to a running VM: a clone of a VM template, or a pooled VM,
// has the template's devices, fixed when it was saved, yet a sandbox's
// rootfs may be a block device (hostfs). Every VM on a machine with PCIe
// therefore has one empty hot-plug slot (a PCIe root port), and such a
// disk is plugged into it once the VM runs: its descriptors go to QEMU
// over QMP (add-fd), then blockdev-add and device_add; the guest's PCIe
// hot-plug driver finds the device and virtio_blk takes it.

// hotplugPort is the root port's ID.
const hotplugPort = "hotplug0"

// hotplugMachines have a PCIe root complex a root port plugs into.
var hotplugMachines = map[string]bool{"q35": true}

// CanHotplugDisk reports whether a VM of machine ("": the architecture's
// default) has the hot-plug slot.
func CanHotplugDisk(machine string) bool {
	if a, ok := hostArch(); ok && machine == "" {
		machine = a.machine
	}
	return hotplugMachines[machineType(machine)]
}

// hotplugArgs are the empty slot's device.
func hotplugArgs(machine string) []string {
	if !CanHotplugDisk(machine) {
		return nil
	}
	return []string{"-device", "pcie-root-port,id=" + hotplugPort + ",bus=pcie.0,chassis=1"}
}

// DiskPlugger is implemented by backends that can add a disk to a
// running VM.
type DiskPlugger interface {
	// PlugDisk adds d, a block device (Disk.Block), to the running VM.
	PlugDisk(ctx context.Context, d Disk) error
}

// PlugDisk opens d's device as the guard would (openBlockDevices), hands
// the descriptors to QEMU in a set of their own, and plugs a virtio-blk
// device of it into the hot-plug slot.
func (q *qemu) PlugDisk(ctx context.Context, d Disk) error {
	if !d.Block || !CanHotplugDisk(q.cfg.Machine) {
		return fmt.Errorf("plug disk %s: a VM of machine %s takes no block device while it runs", d.ID, q.cfg.Machine)
	}
	files, err := openBlockDevices([]blockDevice{{Path: d.Path, ReadOnly: d.ReadOnly}})
	if err != nil {
		return fmt.Errorf("plug disk %s: %w", d.ID, err)
	}
	defer closeFiles(files)
	set := blockFDSet + len(q.cfg.Disks) // past the sets of the command line's disks
	return q.qmpDo(ctx, func(m *QMP) error {
		for _, f := range files {
			if err := m.AddFD(ctx, set, f); err != nil {
				return fmt.Errorf("plug disk %s: %w", d.ID, err)
			}
		}
		node := map[string]any{
			"driver": "raw", "node-name": d.ID, "discard": "unmap", "read-only": d.ReadOnly,
			"file": map[string]any{"driver": "host_device", "filename": fmt.Sprintf("/dev/fdset/%d", set)},
		}
		if _, err := m.Execute(ctx, "blockdev-add", node); err != nil {
			return fmt.Errorf("plug disk %s: %w", d.ID, err)
		}
		dev := map[string]any{"driver": "virtio-blk-pci", "id": d.ID + "-dev", "drive": d.ID, "serial": d.Serial, "bus": hotplugPort}
		if _, err := m.Execute(ctx, "device_add", dev); err != nil {
			return fmt.Errorf("plug disk %s: %w", d.ID, err)
		}
		return nil
	})
}
