package factory

import (
	"testing"

	"github.com/skiff-oci/skiff/hypervisor"
)

// A template on microvm (acpi=off: 8 virtio-mmio transports) fits beside
// the agent's port and the NIC, so that template and clones stay on
// microvm.
func TestTemplateSlotsOnMicrovm(t *testing.T) {
	const machine = "microvm,acpi=off,pic=on,pit=on,rtc=on"
	n := slotsFor(machine)
	if n != templateSlots || slotsFor("q35") != templateSlots || slotsFor("") != templateSlots {
		t.Fatalf("slotsFor: microvm %d, q35 %d, want %d", n, slotsFor("q35"), templateSlots)
	}
	c := hypervisor.Config{Machine: machine, Disks: []hypervisor.Disk{scratchDisk("/s")}}
	for _, tag := range slotTagsN(n) {
		c.Shares = append(c.Shares, hypervisor.Share{Tag: tag})
	}
	if !templateEligible(c) {
		t.Error("a full microvm sandbox is not eligible")
	}
	full := withSlots(hypervisor.Config{Machine: machine, Shares: c.Shares[:1]}, "/empty")
	if d := 1 + len(full.Shares) + len(full.NetDevices) + 1; d > hypervisor.MaxVirtioDevices(machine) {
		t.Errorf("a microvm template has %d virtio devices, more than its %d", d, hypervisor.MaxVirtioDevices(machine))
	}
	c.Shares = append(c.Shares, hypervisor.Share{Tag: "m2"})
	if templateEligible(c) {
		t.Error("a microvm sandbox with more shares than slots is eligible")
	}
}
