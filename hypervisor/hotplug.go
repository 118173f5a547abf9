package hypervisor

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// Disks added to a running VM: a clone of a VM template, or a pooled VM,
// has the template's devices, fixed when it was saved, yet a sandbox's
// rootfs may be a block device (hostfs), and so may the rootfs of each of
// a pod's later containers. Every VM on a machine with PCIe therefore has
// HotplugSlots empty hot-plug slots (PCIe root ports), and such a disk is
// plugged into one once the VM runs: its descriptors go to QEMU over QMP
// (add-fd), then blockdev-add and device_add; the guest's hot-plug driver
// finds the device and virtio_blk takes it. UnplugDisk frees the slot.

// HotplugSlots is how many disks a running VM can be given.
const HotplugSlots = 4

// hotplugPort is slot i's root port ID.
func hotplugPort(i int) string { return "hotplug" + strconv.Itoa(i) }

// hotplugMachines have a PCIe root complex a root port plugs into.
var hotplugMachines = map[string]bool{"q35": true}

// CanHotplugDisk reports whether a VM of machine ("": the architecture's
// default) has the hot-plug slots.
func CanHotplugDisk(machine string) bool {
	if a, ok := hostArch(); ok && machine == "" {
		machine = a.machine
	}
	return hotplugMachines[machineType(machine)]
}

// hotplugArgs are the empty slots' devices.
func hotplugArgs(machine string) []string {
	if !CanHotplugDisk(machine) {
		return nil
	}
	var a []string
	for i := 0; i < HotplugSlots; i++ {
		a = append(a, "-device", fmt.Sprintf("pcie-root-port,id=%s,bus=pcie.0,chassis=%d", hotplugPort(i), i+1))
	}
	return a
}

// DiskPlugger is implemented by backends that can add a disk to a
// running VM and take it away again.
type DiskPlugger interface {
	// PlugDisk adds d, a block device (Disk.Block), to the running VM in
	// hot-plug slot slot (0 to HotplugSlots-1).
	PlugDisk(ctx context.Context, d Disk, slot int) error
	// UnplugDisk takes d, plugged into slot, away (the guest must not
	// use it any more) and returns once the slot is free, or with why
	// not.
	UnplugDisk(ctx context.Context, d Disk, slot int) error
}

// plugSet is the descriptor set of a disk plugged into slot: past the
// sets of the command line's disks (blockFDSet + their index).
func plugSet(slot int) int { return blockFDSet + 32 + slot }

// PlugDisk opens d's device as the guard would (openBlockDevices), hands
// the descriptors to QEMU in the slot's set, and plugs a virtio-blk
// device of it into the slot.
func (q *qemu) PlugDisk(ctx context.Context, d Disk, slot int) error {
	if !d.Block || !CanHotplugDisk(q.cfg.Machine) || slot < 0 || slot >= HotplugSlots {
		return fmt.Errorf("plug disk %s: a VM of machine %s takes no block device in slot %d while it runs", d.ID, q.cfg.Machine, slot)
	}
	files, err := openBlockDevices([]blockDevice{{Path: d.Path, ReadOnly: d.ReadOnly}})
	if err != nil {
		return fmt.Errorf("plug disk %s: %w", d.ID, err)
	}
	defer closeFiles(files)
	set := plugSet(slot)
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
			m.Execute(ctx, "remove-fd", map[string]any{"fdset-id": set})
			return fmt.Errorf("plug disk %s: %w", d.ID, err)
		}
		dev := map[string]any{"driver": "virtio-blk-pci", "id": d.ID + "-dev", "drive": d.ID, "serial": d.Serial, "bus": hotplugPort(slot)}
		if _, err := m.Execute(ctx, "device_add", dev); err != nil {
			m.Execute(ctx, "blockdev-del", map[string]any{"node-name": d.ID})
			m.Execute(ctx, "remove-fd", map[string]any{"fdset-id": set})
			return fmt.Errorf("plug disk %s: %w", d.ID, err)
		}
		return nil
	})
}

// unplugPoll is how often UnplugDisk looks whether the guest let the
// device go.
const unplugPoll = 100 * time.Millisecond

// UnplugDisk asks the guest to give d's device up (device_del), waits
// until QEMU has removed it (then its node can be deleted), and closes
// QEMU's descriptors of it (the slot's set). ctx bounds the wait: a
// guest that never answers keeps the slot.
func (q *qemu) UnplugDisk(ctx context.Context, d Disk, slot int) error {
	return q.qmpDo(ctx, func(m *QMP) error {
		if _, err := m.Execute(ctx, "device_del", map[string]any{"id": d.ID + "-dev"}); err != nil {
			return fmt.Errorf("unplug disk %s: %w", d.ID, err)
		}
		for {
			_, err := m.Execute(ctx, "blockdev-del", map[string]any{"node-name": d.ID})
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("unplug disk %s: the guest did not release it: %w", d.ID, err)
			case <-time.After(unplugPoll):
			}
		}
		if _, err := m.Execute(ctx, "remove-fd", map[string]any{"fdset-id": plugSet(slot)}); err != nil {
			return fmt.Errorf("unplug disk %s: %w", d.ID, err)
		}
		return nil
	})
}
