package factory

import (
	"testing"

	"github.com/skiff-oci/skiff/hypervisor"
)

// A sandbox whose rootfs is a block device comes from a template on a
// machine with the hot-plug slot: the device is split off, to be plugged
// in, and the rest (no "rootfs" share) fits the template's slots. On
// microvm it boots cold with the disk on its command line.
func TestBlockRootfsFitsATemplate(t *testing.T) {
	c := hypervisor.Config{
		Machine: "q35",
		Shares:  []hypervisor.Share{{Tag: "m0", HostPath: "/s/dirs"}},
		Disks: []hypervisor.Disk{
			scratchDisk("/s/scratch.img"),
			{ID: "rootdisk", Path: "/dev/loop0", Serial: "skiff-rootfs", Block: true},
		},
	}
	clone, plug := pluggable(c)
	if len(plug) != 1 || plug[0].ID != "rootdisk" || len(clone.Disks) != 1 || clone.Disks[0].Block {
		t.Fatalf("q35: clone disks %+v, plugged %+v; want the scratch disk and the rootfs disk apart", clone.Disks, plug)
	}
	if !templateEligible(clone) {
		t.Error("q35: a sandbox with a plugged rootfs disk and no rootfs share cannot come from a template")
	}
	if got := withSlots(clone, "/t/empty").Shares; len(got) != 3 || got[0].Tag != "rootfs" || got[0].HostPath != "/t/empty" || got[1].HostPath != "/s/dirs" {
		t.Errorf("q35: the clone's shares %+v: want the empty rootfs slot, then dirs/ in m0", got)
	}

	c.Machine = "microvm"
	if clone, plug := pluggable(c); len(plug) != 0 || templateEligible(clone) {
		t.Errorf("microvm: plugged %+v, template %v; want a cold boot with both disks", plug, templateEligible(clone))
	}
}
