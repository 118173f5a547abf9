package factory

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiff-oci/skiff/hypervisor"
)

func TestTemplateEligibleAndSlots(t *testing.T) {
	c := hypervisor.Config{Shares: []hypervisor.Share{{Tag: "rootfs", HostPath: "/r"}, {Tag: "m0", HostPath: "/d"}}}
	if templateEligible(c) {
		t.Error("a sandbox without its scratch disk is eligible: the template has one")
	}
	c.Disks = []hypervisor.Disk{scratchDisk("/s")}
	if !templateEligible(c) {
		t.Fatal("a sandbox with a rootfs and one bind is not eligible")
	}
	full := withSlots(c, "/empty")
	if len(full.Shares) != templateSlots+1 || full.Shares[1].HostPath != "/d" || full.Shares[2].HostPath != "/empty" || !full.Shares[2].ReadOnly {
		t.Errorf("slots: %+v", full.Shares)
	}
	for i, tag := range slotTags() {
		if full.Shares[i].Tag != tag {
			t.Errorf("slot %d tag %s, want %s", i, full.Shares[i].Tag, tag)
		}
	}
	if len(c.Shares) != 2 {
		t.Error("withSlots changed its argument")
	}
	if len(full.NetDevices) != templateNICs || !full.NetDevices[0].Placeholder || full.NetDevices[0].MAC != TemplateMAC(0) {
		t.Errorf("NIC slots: %+v", full.NetDevices)
	}
	c.NetDevices = []hypervisor.NetDevice{{MAC: "02:00:00:00:00:01"}}
	if !templateEligible(c) {
		t.Error("a sandbox with one NIC is not eligible")
	}
	if nic := withSlots(c, "/empty").NetDevices[0]; nic.Placeholder || nic.MAC != TemplateMAC(0) {
		t.Errorf("a sandbox's NIC in its template slot: %+v", nic)
	}
	c.NetDevices = append(c.NetDevices, hypervisor.NetDevice{MAC: "02:00:00:00:00:02"})
	if templateEligible(c) {
		t.Error("a sandbox with more NICs than the template is eligible")
	}
	many := hypervisor.Config{Disks: c.Disks}
	for _, tag := range append(slotTags(), "m99") {
		many.Shares = append(many.Shares, hypervisor.Share{Tag: tag})
	}
	if templateEligible(many) {
		t.Error("more shares than slots is eligible")
	}
}

func TestTemplateKeyFollowsInputs(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"qemu", "vmlinux", "initrd"} {
		os.WriteFile(filepath.Join(dir, n), []byte(n), 0o644)
	}
	c := hypervisor.Config{Binary: filepath.Join(dir, "qemu"), Kernel: filepath.Join(dir, "vmlinux"),
		Initrd: filepath.Join(dir, "initrd"), MemoryMiB: 512, VCPUs: 1, Accel: "tcg"}
	k1, err := templateKey(c)
	if err != nil {
		t.Fatal(err)
	}
	if k2, _ := templateKey(c); k2 != k1 {
		t.Error("key not stable")
	}
	c2 := c
	c2.MemoryMiB = 1024
	if k, _ := templateKey(c2); k == k1 {
		t.Error("memory size not in the key")
	}
	// A rebuilt initrd is a new template.
	later := time.Now().Add(time.Hour)
	os.Chtimes(c.Initrd, later, later)
	if k, _ := templateKey(c); k == k1 {
		t.Error("initrd mtime not in the key")
	}
	c.Kernel = filepath.Join(dir, "missing")
	if _, err := templateKey(c); err == nil {
		t.Error("a missing kernel gave a key")
	}
}
