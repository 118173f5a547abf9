// Package factory hands a sandbox a running VM whose agent answered: one
// Reserve and Start, whether the VM is booted cold, restored from a VM
// template of its configuration, or taken from the pool of VMs restored in
// advance. The caller never branches on where its VM came from. It also
// builds templates and fills the pool (skiff factory ...).
//
// It sits below the shim and the verbs and above the host plumbing: it may
// import hostnet, hostfs, hostcgroup, oci, the hypervisor and the agent
// client, never the shim, the state store or the verbs. The VMM is a
// constructor it is given (VMM), so that tests stand in for QEMU.
package factory

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/config"
	"github.com/skiff-oci/skiff/hypervisor"
	"github.com/skiff-oci/skiff/internal/fspath"
	"github.com/skiff-oci/skiff/sandbox/hostcgroup"
	"github.com/skiff-oci/skiff/sandbox/hostdisk"
	"github.com/skiff-oci/skiff/sandbox/hostfs"
	"github.com/skiff-oci/skiff/sandbox/hostnet"
)

// stopTimeout bounds an orderly VMM quit before it is killed.
const stopTimeout = 3 * time.Second

// VMM makes the Hypervisor of a VM: one to start, or one that adopts a VM
// another process started (a pooled VM); and finds or kills the VM a
// pidfile names, for VMs no live process of skiff's holds.
type VMM interface {
	New(c hypervisor.Config) (hypervisor.Hypervisor, error)
	Adopt(c hypervisor.Config) (hypervisor.Hypervisor, error)
	// Running is the PID of the live VM of pidFile, 0 if none.
	Running(pidFile string) int
	// Kill kills the VM of pidFile, if it runs, and waits for its end.
	Kill(pidFile string) error
}

// QEMU is the production VMM.
var QEMU VMM = qemuVMM{}

type qemuVMM struct{}

func (qemuVMM) New(c hypervisor.Config) (hypervisor.Hypervisor, error) { return hypervisor.NewQEMU(c) }
func (qemuVMM) Adopt(c hypervisor.Config) (hypervisor.Hypervisor, error) {
	return hypervisor.AdoptQEMU(c)
}
func (qemuVMM) Running(pidFile string) int { return hypervisor.VMMPID(pidFile) }
func (qemuVMM) Kill(pidFile string) error  { return hypervisor.KillVMM(pidFile) }

// host is what the factory does on the host beside the VMM; a field, so
// that tests of the factory need no root.
type host struct {
	// spareTaps gives a VM's placeholder NICs taps, their namespace
	// pinned at pin when pin is not "" (hostnet.SpareTapsPinned).
	spareTaps func(devs []hypervisor.NetDevice, pin string) (func(), error)
	bindShare func(sh hypervisor.Share, target string) error
	// protect makes a directory a VM exports read-only to it.
	protect  func(dir string) error
	joinRoot func() error
	// makeDisk makes a scratch disk file of size bytes at path, formatted
	// when format (hostdisk).
	makeDisk func(path string, size int64, format bool) error
	// virtioFS says why VMs cannot share over virtio-fs here, nil if
	// they can (hypervisor.VirtioFS).
	virtioFS func() error
	// yield lowers the CPU priority of the calling filler and of all it
	// starts; unyield restores that of a pooled VM's processes (the
	// process group of the VMM pid) when a sandbox takes it.
	yield   func() error
	unyield func(pid int) error
}

var onHost = host{spareTaps: hostnet.SpareTapsPinned, bindShare: hostfs.BindShare, protect: hostfs.ProtectDir, joinRoot: hostcgroup.JoinRoot,
	makeDisk: makeDisk, virtioFS: hypervisor.VirtioFS, yield: yieldCPU, unyield: unyieldCPU}

// fillerNice is the nice value a filler and the VMs it starts run at
// until a sandbox takes one: a refill starts while the sandbox that took
// the last VM is still starting, and on a busy host it must not take the
// CPU from it (or from sandboxes that run).
const fillerNice = 19

// yieldCPU gives every thread of a filler a shim started (a session
// leader: its process group is its own) fillerNice; the processes it
// starts inherit it. `factory init`, run from a shell or a script whose
// process group it shares, keeps its priority.
func yieldCPU() error {
	if sid, err := unix.Getsid(0); err != nil || sid != os.Getpid() {
		return err
	}
	return unix.Setpriority(unix.PRIO_PGRP, 0, fillerNice)
}

// unyieldCPU gives a pooled VM's processes (QEMU, its guard, its file
// servers: the guard's process group) the default priority back.
func unyieldCPU(pid int) error {
	pgid, err := unix.Getpgid(pid)
	if err != nil {
		return err
	}
	return unix.Setpriority(unix.PRIO_PGRP, pgid, 0)
}

// makeDisk is host.makeDisk on the host. On error nothing is left.
func makeDisk(path string, size int64, format bool) error {
	d, err := hostdisk.Create(path, size)
	if err != nil || !format {
		return err
	}
	if err := d.Ready(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// Factory is the factory of one configuration.
type Factory struct {
	cfg *config.Config
	dir string // factory.dir: templates, one per key, and the pool
	// root is the state root: the accelerator probe caches there.
	root string
	vmm  VMM
	host host
}

// New returns the factory of cfg; stateRoot is the --root in force.
func New(cfg *config.Config, stateRoot string, vmm VMM) *Factory {
	return &Factory{cfg: cfg, dir: fspath.Canonical(cfg.Factory.Dir), root: stateRoot, vmm: vmm, host: onHost}
}

// ensureDir creates factory.dir, private, and refuses one another user
// owns or others may write to: a template or a pooled VM planted there
// would become a sandbox's VM.
func (f *Factory) ensureDir() error {
	return fspath.EnsurePrivateDir(f.dir, "factory.dir", "set another factory.dir")
}

// CheckGuest refuses a configuration whose VM could not start, before
// anything touches disk.
func CheckGuest(c *config.Config) error {
	h := c.Hypervisor
	for _, f := range []struct{ what, path string }{
		{"hypervisor.path (QEMU)", h.Path},
		{"hypervisor.kernel", h.Kernel},
		{"hypervisor.initrd", h.Initrd},
	} {
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%s %s does not exist: build the guest image with make, install QEMU, or fix the configuration", f.what, f.path)
		}
	}
	return nil
}

// BaseConfig is the part of a VM's configuration that comes from skiff's
// configuration alone (not from a container): what sandboxes and their
// template share. It resolves the accelerator (cached in the state root)
// and says why it chose it.
func (f *Factory) BaseConfig(ctx context.Context) (hypervisor.Config, string, error) {
	h := f.cfg.Hypervisor
	accel, why, err := hypervisor.ResolveAccel(ctx, hypervisor.Accel(h.Accel), hypervisor.ProbeConfig{
		Binary: h.Path, Kernel: h.Kernel, Initrd: h.Initrd, Machine: h.MachineType,
	}, f.root)
	if err != nil {
		return hypervisor.Config{}, "", fmt.Errorf("choose accelerator: %w", err)
	}
	params := strings.Fields(h.KernelParams)
	if f.cfg.Runtime.GuestDebug {
		params = append(params, "skiff.debug=1")
	}
	return hypervisor.Config{
		Binary:       h.Path,
		Kernel:       h.Kernel,
		Initrd:       h.Initrd,
		KernelParams: params,
		Machine:      h.MachineType,
		Accel:        accel,
		VCPUs:        h.DefaultVCPUs,
		MemoryMiB:    h.DefaultMemory,
	}, why, nil
}

// Init builds the VM template of the configuration now (skiff factory
// init), so that no sandbox pays for it.
func (f *Factory) Init(ctx context.Context) (Template, error) {
	if err := CheckGuest(f.cfg); err != nil {
		return Template{}, err
	}
	base, _, err := f.BaseConfig(ctx)
	if err != nil {
		return Template{}, err
	}
	return f.Ensure(ctx, base)
}
