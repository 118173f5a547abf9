package shim

import (
	"context"
	"log/slog"
	"testing"

	"github.com/skiff-oci/skiff/config"
	"github.com/skiff-oci/skiff/hypervisor"
	"github.com/skiff-oci/skiff/internal/fakevm"
	"github.com/skiff-oci/skiff/sandbox/factory"
	"github.com/skiff-oci/skiff/sandbox/hostfs"
)

// plugger is a VM that takes disks while it runs.
type plugger struct{ *fakevm.VM }

func (plugger) PlugDisk(context.Context, hypervisor.Disk, int) error   { return nil }
func (plugger) UnplugDisk(context.Context, hypervisor.Disk, int) error { return nil }

// A pod container whose rootfs is shared holds no hot-plug slot: however
// many of them run, a container with a block rootfs still finds one.
func TestSharedRootfsHoldsNoSlot(t *testing.T) {
	vm, _ := (&fakevm.VMM{}).New(hypervisor.Config{})
	s := &shim{cfg: config.Default(), log: slog.Default(), machine: "q35",
		vm: &factory.VM{Hypervisor: plugger{vm.(*fakevm.VM)}}}
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		plan := &hostfs.Plan{}
		if err := s.planRootDisk(id, t.TempDir(), plan); err != nil {
			t.Fatal(err)
		}
		if len(plan.Disks) != 0 {
			t.Fatalf("%s: a directory rootfs was made a disk: %+v", id, plan.Disks)
		}
	}
	if got := s.takeSlot("block"); got != 0 {
		t.Errorf("after five shared-rootfs containers, the free slot is %d, want 0", got)
	}
}
