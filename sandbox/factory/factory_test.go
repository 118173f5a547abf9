package factory

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-oci/skiff/config"
	"github.com/skiff-oci/skiff/hypervisor"
	"github.com/skiff-oci/skiff/internal/fakevm"
	"github.com/skiff-oci/skiff/internal/ocitest"
	"github.com/skiff-oci/skiff/internal/proc"
	"github.com/skiff-oci/skiff/sandbox/hostdisk"
	"github.com/skiff-oci/skiff/sandbox/hostfs"
	"github.com/skiff-oci/skiff/sandbox/oci"
)

// testFactory is a factory on a stand-in VMM, with no host side effects:
// it needs neither root nor QEMU.
func testFactory(t *testing.T, template bool, cache int) (*Factory, *fakevm.VMM) {
	t.Helper()
	dir := t.TempDir()
	cfg := fakevm.Config(dir, template, cache)
	vmm := &fakevm.VMM{}
	f := New(cfg, filepath.Join(dir, "root"), vmm)
	f.host = host{
		spareTaps: func([]hypervisor.NetDevice, string) (func(), error) { return func() {}, nil },
		bindShare: func(hypervisor.Share, string) error { return nil },
		protect:   func(string) error { return nil },
		joinRoot:  func() error { return nil },
		makeDisk: func(path string, size int64, format bool) error {
			return os.WriteFile(path, nil, 0o600)
		},
		virtioFS: func() error { return nil },
		yield:    func() error { return nil },
		unyield:  func(int) error { return nil },
	}
	return f, vmm
}

// scratchDisk is a sandbox's scratch disk of the default size.
func scratchDisk(path string) hypervisor.Disk {
	size, _ := config.ScratchBytes(config.Default().Storage.ScratchSize)
	return hypervisor.Disk{ID: hostdisk.DiskID, Path: path, Serial: "skiff-scratch", Size: size}
}

// acquire asks f for a sandbox's VM as the shim does.
func acquire(t *testing.T, f *Factory) (*Lease, *VM, error) {
	t.Helper()
	l, vm, _, err := acquirePlan(t, f)
	return l, vm, err
}

// acquirePlan is acquire, with the share plan the VM was started with.
func acquirePlan(t *testing.T, f *Factory) (*Lease, *VM, *hostfs.Plan, error) {
	t.Helper()
	sb := t.TempDir()
	b, err := oci.LoadBundle(ocitest.Bundle(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := hostfs.PlanShares(sb, b, false)
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := f.BaseConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c.Shares = plan.Host
	c.Disks = []hypervisor.Disk{scratchDisk(filepath.Join(sb, "scratch.img"))}
	c.AgentSocket, c.QMPSocket = filepath.Join(sb, "agent.sock"), filepath.Join(sb, "qmp.sock")
	c.ConsoleLog, c.StderrLog, c.PIDFile = filepath.Join(sb, "console.log"), filepath.Join(sb, "qemu.log"), filepath.Join(sb, "qemu.pid")
	l := f.Reserve(Request{Config: c, Dir: sb, NICs: func() (int, error) { return 0, nil }})
	vm, err := l.Start(context.Background(), nil, plan, nil)
	if err == nil {
		t.Cleanup(func() {
			vm.Stop(context.Background(), time.Second)
			l.Release()
		})
	}
	return l, vm, plan, err
}

func TestAcquireBootsColdWithoutTemplates(t *testing.T) {
	f, vmm := testFactory(t, false, 0)
	_, vm, err := acquire(t, f)
	if err != nil {
		t.Fatal(err)
	}
	if vm.From != "cold" || vmm.Started != 1 || vmm.Restored != 0 {
		t.Errorf("from %s, %d started, %d restored; want one cold boot", vm.From, vmm.Started, vmm.Restored)
	}
	if _, err := vm.Agent.Ping(context.Background()); err != nil {
		t.Errorf("the VM's agent does not answer: %v", err)
	}
	// The VM dies: Exited says so.
	vm.Hypervisor.(*fakevm.VM).Crash()
	select {
	case <-vm.Exited():
	case <-time.After(5 * time.Second):
		t.Error("Exited not closed after the VM died")
	}
}

func TestSharedFSPerSandbox(t *testing.T) {
	noVirtioFS := errors.New("no virtiofsd")
	for _, tc := range []struct {
		setting  string
		template bool
		host     error
		from     string
		fs       hypervisor.FS
		fstype   string
	}{
		// auto: a clone where a template serves (9p), virtio-fs for a
		// cold boot where the host has it, 9p where not.
		{"auto", true, nil, "template", "", "9p"},
		{"auto", false, nil, "cold", hypervisor.FSVirtio, "virtiofs"},
		{"auto", false, noVirtioFS, "cold", hypervisor.FS9P, "9p"},
		// virtio-fs: no clones, even with templates on.
		{"virtio-fs", true, nil, "cold", hypervisor.FSVirtio, "virtiofs"},
		{"9p", false, nil, "cold", hypervisor.FS9P, "9p"},
	} {
		name := fmt.Sprintf("%s/template=%v/host=%v", tc.setting, tc.template, tc.host)
		t.Run(name, func(t *testing.T) {
			f, _ := testFactory(t, tc.template, 0)
			f.cfg.Runtime.SharedFS = tc.setting
			f.host.virtioFS = func() error { return tc.host }
			_, vm, plan, err := acquirePlan(t, f)
			if err != nil {
				t.Fatal(err)
			}
			if vm.From != tc.from {
				t.Errorf("from %s, want %s", vm.From, tc.from)
			}
			if got := vm.Hypervisor.(*fakevm.VM).Config().SharedFS; got != tc.fs {
				t.Errorf("VM shares over %q, want %q", got, tc.fs)
			}
			for _, s := range plan.Guest {
				if s.FSType != tc.fstype {
					t.Errorf("guest mounts share %s as %q, want %q", s.Tag, s.FSType, tc.fstype)
				}
			}
		})
	}
}

func TestAcquireBuildsThenRestoresTheTemplate(t *testing.T) {
	f, vmm := testFactory(t, true, 0)
	for i := 0; i < 2; i++ {
		_, vm, err := acquire(t, f)
		if err != nil {
			t.Fatal(err)
		}
		if vm.From != "template" {
			t.Errorf("sandbox %d: from %s, want template", i, vm.From)
		}
	}
	// One template VM booted and saved, two clones restored from it.
	if vmm.Started != 3 || vmm.Restored != 2 {
		t.Errorf("%d VMs started, %d restored; want 3 and 2", vmm.Started, vmm.Restored)
	}
	list, err := f.Templates()
	if err != nil || len(list) != 1 {
		t.Errorf("templates %+v, %v; want one", list, err)
	}
}

func TestAcquireTakesAPooledVMAndReleaseRemovesIt(t *testing.T) {
	f, vmm := testFactory(t, true, 1)
	if err := f.Fill(context.Background()); err != nil {
		t.Fatal(err)
	}
	if pool := f.Pool(); len(pool) != 1 || !pool[0].Ready {
		t.Fatalf("pool after fill: %+v", pool)
	}
	l, vm, err := acquire(t, f)
	if err != nil {
		t.Fatal(err)
	}
	if vm.From != "pool" || vmm.Adopts != 1 {
		t.Errorf("from %s with %d adopted; want the pooled VM", vm.From, vmm.Adopts)
	}
	if !l.refill {
		t.Error("taking the pool's VM did not ask for a refill")
	}
	vm.Stop(context.Background(), time.Second)
	l.Release()
	if pool := f.Pool(); len(pool) != 0 {
		t.Errorf("pool after release: %+v, want empty", pool)
	}
}

func TestAcquireReportsAGuestThatDiesBooting(t *testing.T) {
	f, vmm := testFactory(t, false, 0)
	vmm.Broken = true
	_, _, err := acquire(t, f)
	if err == nil || !strings.Contains(err.Error(), "exited while booting") || !strings.Contains(err.Error(), "Kernel panic") {
		t.Errorf("got %v; want the exit and the console's panic line", err)
	}
}

func TestFactoryRefusesADirectoryOthersMayWrite(t *testing.T) {
	f, _ := testFactory(t, true, 1)
	os.MkdirAll(f.dir, 0o700)
	os.Chmod(f.dir, 0o777)
	if _, err := f.Init(context.Background()); err == nil || !strings.Contains(err.Error(), "not writable by others") {
		t.Errorf("a factory.dir others may write to: %v", err)
	}
	if err := f.Fill(context.Background()); err == nil {
		t.Error("the pool was filled in a factory.dir others may write to")
	}
}

// Templates of other sizes accumulate in RAM: beyond maxTemplates, the
// least recently used goes.
func TestTemplatesBeyondTheLimitAreEvictedLeastRecentlyUsedFirst(t *testing.T) {
	f, _ := testFactory(t, true, 0)
	ctx := context.Background()
	base, _, err := f.BaseConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sized := func(mib int) hypervisor.Config {
		c := base
		c.MemoryMiB = mib
		return c
	}
	sizes := []int{128, 160, 192, 224}
	for _, mib := range sizes {
		if _, err := f.Ensure(ctx, sized(mib)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // distinct use times
	}
	// 128 is used again: 160 is now the least recently used.
	if _, err := f.Ensure(ctx, sized(128)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if _, err := f.Ensure(ctx, sized(256)); err != nil {
		t.Fatal(err)
	}
	list, err := f.Templates()
	if err != nil {
		t.Fatal(err)
	}
	have := map[int]bool{}
	for _, info := range list {
		have[info.Memory] = true
	}
	if len(list) != maxTemplates || have[160] || !have[128] || !have[256] {
		t.Errorf("templates of %v MiB left, want %d without 160 (least recently used)", have, maxTemplates)
	}
}

// A filler whose turn comes after a destroy (a shim started it before)
// leaves the pool empty; one started after the destroy fills.
func TestDestroyStopsFillersStartedBeforeIt(t *testing.T) {
	f, _ := testFactory(t, true, 1)
	if err := f.Fill(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := f.DestroyPool(); err != nil {
		t.Fatal(err)
	}
	// This test's process is the late filler: it started before the
	// destroy.
	if err := f.Refill(context.Background()); err != nil {
		t.Fatal(err)
	}
	if pool := f.Pool(); len(pool) != 0 {
		t.Errorf("a filler started before destroy filled the pool: %+v", pool)
	}
	if f.destroyedSince(proc.Now() + 1) {
		t.Error("a filler started after the destroy is told to stop")
	}
}
