package hypervisor

import (
	"testing"
)

// A host block device reaches QEMU as descriptors in a set (one read-only,
// one read-write), through the host_device driver, with the guest's
// flushes kept; a scratch image is a file QEMU opens, flushes ignored.
func TestDiskArgsBlockDevice(t *testing.T) {
	args := diskArgs([]Disk{
		{ID: "scratch", Path: "/s/scratch.img", Serial: "skiff-scratch"},
		{ID: "rootdisk", Path: "/dev/loop3", Serial: "skiff-rootfs", Block: true},
		{ID: "rodisk", Path: "/dev/loop4", Serial: "skiff-ro", Block: true, ReadOnly: true},
	}, "pci", 8)
	for _, w := range [][2]string{
		{"-drive", "if=none,id=scratch,file=/s/scratch.img,format=raw,cache=unsafe,discard=unmap"},
		{"-add-fd", "fd=8,set=11"},
		{"-add-fd", "fd=9,set=11"},
		{"-drive", "if=none,id=rootdisk,file.driver=host_device,file.filename=/dev/fdset/11,format=raw,cache=writeback,discard=unmap"},
		{"-device", "virtio-blk-pci,drive=rootdisk,id=rootdisk-dev,serial=skiff-rootfs"},
		{"-add-fd", "fd=10,set=12"},
		{"-drive", "if=none,id=rodisk,file.driver=host_device,file.filename=/dev/fdset/12,format=raw,cache=writeback,discard=unmap,readonly=on"},
	} {
		if !hasPair(args, w[0], w[1]) {
			t.Errorf("disk args lack %s %s\nargs: %q", w[0], w[1], args)
		}
	}
	if hasPair(args, "-add-fd", "fd=11,set=12") {
		t.Errorf("a read-only device is given a read-write descriptor: %q", args)
	}
}
