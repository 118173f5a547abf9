package factory

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/agentclient"
	"github.com/skiff-oci/skiff/agentclient/protocol"
	"github.com/skiff-oci/skiff/config"
	"github.com/skiff-oci/skiff/hypervisor"
	"github.com/skiff-oci/skiff/internal/flock"
	"github.com/skiff-oci/skiff/internal/logtail"
	"github.com/skiff-oci/skiff/sandbox/hostdisk"
	"github.com/skiff-oci/skiff/sandbox/hostfs"
	"github.com/skiff-oci/skiff/sandbox/oci"
)

// VM templates (the "factory"): the first sandbox of a configuration boots
// a guest up to the point where its agent waits for a host, saves it, and
// every sandbox after that is restored from the saved state in a fraction
// of a boot. See hypervisor/template.go for the QEMU side.

// templateSlots is how many shared-filesystem devices a template carries
// besides the rootfs's: a template's devices are fixed when it is saved.
// planShares never gives more: one for every bind-mounted directory, one
// for every bind-mounted file.
const templateSlots = 2

// templateNICs is how many NICs a template carries: placeholders without a
// backend in the template, a clone's own taps after restore. The guest
// NICs keep the template's MACs (TemplateMAC); the agent gives them the
// namespace's.
const templateNICs = 1

// TemplateMAC is the MAC of a template's NIC k: locally administered.
func TemplateMAC(k int) string { return fmt.Sprintf("02:73:6b:00:00:%02x", k) }

// errTemplateBusy means another process is building the template now; the
// caller boots cold rather than wait.
var errTemplateBusy = errors.New("template being built by another process")

// Template is one saved guest.
type Template struct{ Dir string }

func (t Template) memory() string { return filepath.Join(t.Dir, "memory") }
func (t Template) state() string  { return filepath.Join(t.Dir, "state") }
func (t Template) meta() string   { return filepath.Join(t.Dir, "template.json") }
func (t Template) empty() string  { return filepath.Join(t.Dir, "empty") }
func (t Template) disk() string   { return filepath.Join(t.Dir, "scratch.img") }

// TemplateInfo is template.json: what the template was made from.
type TemplateInfo struct {
	Key     string    `json:"key"`
	Created time.Time `json:"created"`
	Binary  string    `json:"binary"`
	Kernel  string    `json:"kernel"`
	Initrd  string    `json:"initrd"`
	Memory  int       `json:"memoryMiB"`
	VCPUs   int       `json:"vcpus"`
	Machine string    `json:"machine"`
	Accel   string    `json:"accel"`
	Params  []string  `json:"kernelParams,omitempty"`
}

// stale tells whether the inputs the template was made from changed (a
// rebuilt kernel, initrd or QEMU): nothing will ever use it again.
func (info TemplateInfo) stale() bool {
	key, err := templateKey(hypervisor.Config{Binary: info.Binary, Kernel: info.Kernel, Initrd: info.Initrd,
		MemoryMiB: info.Memory, VCPUs: info.VCPUs, Machine: info.Machine, Accel: hypervisor.Accel(info.Accel), KernelParams: info.Params})
	return err != nil || key != info.Key
}

// slotsFor is how many spare share slots a template on machine carries:
// templateSlots, or fewer where the machine has room for fewer virtio
// devices (microvm with acpi=off: 8, of which the agent's port, the NICs
// and the rootfs take 3).
func slotsFor(machine string) int {
	max := hypervisor.MaxVirtioDevices(machine)
	if max == 0 {
		return templateSlots
	}
	return min(templateSlots, max-1-templateNICs-1)
}

// slotTags are the shared-filesystem tags of a template, in order.
func slotTags() []string { return slotTagsN(templateSlots) }

// slotTagsN are the tags of a template with n spare slots.
func slotTagsN(n int) []string {
	tags := []string{"rootfs"}
	for i := 0; i < n; i++ {
		tags = append(tags, fmt.Sprintf("m%d", i))
	}
	return tags
}

// templateKey names everything a clone must share with its template: the
// VMM binary, kernel and initrd (by path, size and mtime: a rebuilt file is
// a new template), memory, vCPUs, machine, accelerator, kernel parameters,
// and the device set the hypervisor package gives that machine.
func templateKey(c hypervisor.Config) (string, error) {
	h := sha256.New()
	for _, p := range []string{c.Binary, c.Kernel, c.Initrd} {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d %d\n", p, fi.Size(), fi.ModTime().UnixNano())
	}
	fmt.Fprintf(h, "mem=%d cpus=%d machine=%s accel=%s params=%s slots=%d tapnics=%d proto=%d devices=%s\n",
		c.MemoryMiB, c.VCPUs, c.Machine, c.Accel, strings.Join(c.KernelParams, " "), slotsFor(c.Machine), templateNICs, protocol.Version,
		hypervisor.DeviceModel(c.Machine))
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// templateEligible tells whether a sandbox's VM can come from a template:
// no NICs (they are not in the template) and no more shares than slots,
// with the tags planShares gives.
func templateEligible(c hypervisor.Config) bool {
	n := slotsFor(c.Machine)
	if len(c.NetDevices) > templateNICs || len(c.Shares) > n+1 {
		return false
	}
	// A template carries one scratch disk; its clones bring their own
	// file behind the same device.
	if len(c.Disks) != 1 || c.Disks[0].ID != hostdisk.DiskID {
		return false
	}
	// The template's tags, each at most once; a sandbox whose rootfs is
	// a disk (plugged in later) has no "rootfs" share.
	tags := slotTagsN(n)
	seen := map[string]bool{}
	for _, s := range c.Shares {
		if !slices.Contains(tags, s.Tag) || seen[s.Tag] {
			return false
		}
		seen[s.Tag] = true
	}
	return true
}

// withSlots gives c the template's full device list: its own shares in
// their slots, the unused slots pointing at an empty read-only directory;
// its NICs with the template's MACs, then placeholders.
func withSlots(c hypervisor.Config, empty string) hypervisor.Config {
	var shares []hypervisor.Share
	for _, tag := range slotTagsN(slotsFor(c.Machine)) {
		i := slices.IndexFunc(c.Shares, func(s hypervisor.Share) bool { return s.Tag == tag })
		if i >= 0 {
			shares = append(shares, c.Shares[i])
		} else {
			shares = append(shares, hypervisor.Share{Tag: tag, HostPath: empty, ReadOnly: true})
		}
	}
	c.Shares = shares
	nics := make([]hypervisor.NetDevice, templateNICs)
	for k := range nics {
		if k < len(c.NetDevices) {
			nics[k] = c.NetDevices[k]
		} else {
			nics[k].Placeholder = true
		}
		nics[k].MAC = TemplateMAC(k)
	}
	c.NetDevices = nics
	return c
}

// Ensure returns the template for c, building it first if needed. It
// returns errTemplateBusy when another process is building it.
func (f *Factory) Ensure(ctx context.Context, c hypervisor.Config) (Template, error) {
	key, err := templateKey(c)
	if err != nil {
		return Template{}, err
	}
	t := Template{Dir: filepath.Join(f.dir, key)}
	// template.json's time is the template's last use: prune keeps the
	// templates used last.
	now := time.Now()
	if err := os.Chtimes(t.meta(), now, now); err == nil {
		return t, nil
	}
	if err := f.ensureDir(); err != nil {
		return Template{}, err
	}
	lock, err := os.OpenFile(t.Dir+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return Template{}, err
	}
	defer lock.Close()
	if !flock.Try(lock.Fd()) {
		return Template{}, errTemplateBusy
	}
	if _, err := os.Stat(t.meta()); err == nil {
		return t, nil // built while we took the lock
	}
	os.RemoveAll(t.Dir)
	if err := f.build(ctx, t, key, c); err != nil {
		os.RemoveAll(t.Dir)
		return Template{}, fmt.Errorf("build VM template: %w", err)
	}
	f.prune(key)
	return t, nil
}

// build boots the template VM, waits until its agent waits for a host, and
// saves it. template.json is written last: its presence means complete.
func (f *Factory) build(ctx context.Context, t Template, key string, base hypervisor.Config) error {
	if err := os.MkdirAll(t.empty(), 0o700); err != nil {
		return err
	}
	// The template's own disk is a placeholder: its guest probes it (the
	// warm-up loads virtio_blk) but never mounts it. Only device state
	// migrates: a clone brings its own file behind the same device, and
	// its size is announced to the guest after the restore (startClone).
	if err := f.host.makeDisk(t.disk(), config.MinScratchSize, false); err != nil {
		return err
	}
	c := t.vmConfig(key, base)
	release, err := f.host.spareTaps(c.NetDevices, "")
	if err != nil {
		return err
	}
	defer release()
	vm, err := f.vmm.New(c)
	if err != nil {
		return err
	}
	if err := vm.Start(ctx); err != nil {
		return err
	}
	defer vm.Stop(context.Background(), stopTimeout)
	deadline := time.Now().Add(f.cfg.Hypervisor.BootTimeoutDuration())
	if err := waitForAgent(vm, c.ConsoleLog, 1, deadline); err != nil {
		return err
	}
	// One session before the save: the agent's protocol version is
	// checked here once (clones skip the Ping), and what the agent
	// builds lazily on a container's creation path is built into the
	// template. The agent then waits for a host again.
	if err := warmTemplate(ctx, c.AgentSocket, deadline); err != nil {
		return err
	}
	if err := waitForAgent(vm, c.ConsoleLog, 2, deadline); err != nil {
		return err
	}
	return t.save(ctx, vm, key, base)
}

// vmConfig is the template VM of base: every slot a clone may use, its
// RAM in the template's memory file, its files in the template's
// directory.
func (t Template) vmConfig(key string, base hypervisor.Config) hypervisor.Config {
	c := withSlots(hypervisor.Config{
		Name: "skiff-template-" + key, Binary: base.Binary, Kernel: base.Kernel, Initrd: base.Initrd,
		KernelParams: base.KernelParams, Machine: base.Machine, Accel: base.Accel, VCPUs: base.VCPUs, MemoryMiB: base.MemoryMiB,
	}, t.empty())
	c.MemoryFile, c.MemoryShared = t.memory(), true
	c.Disks = []hypervisor.Disk{{ID: hostdisk.DiskID, Path: t.disk(), Serial: protocol.ScratchSerial, Size: config.MinScratchSize}}
	c.AgentSocket = filepath.Join(t.Dir, "agent.sock")
	c.QMPSocket = filepath.Join(t.Dir, "qmp.sock")
	c.ConsoleLog = filepath.Join(t.Dir, "console.log")
	c.StderrLog = filepath.Join(t.Dir, "qemu.log")
	c.PIDFile = filepath.Join(t.Dir, "qemu.pid")
	return c
}

// waitForAgent returns once the guest's agent has said n times on its
// console that it waits for a host, or fails when the VM exits or the
// deadline passes.
func waitForAgent(vm hypervisor.Hypervisor, console string, n int, deadline time.Time) error {
	exited := make(chan struct{})
	go func() {
		vm.Wait()
		close(exited)
	}()
	for logtail.Count(console, protocol.WaitingMessage) < n {
		select {
		case <-exited:
			return fmt.Errorf("the template VM exited while booting%s", tailOf(console))
		default:
		}
		if time.Now().After(deadline) {
			return &guestTimeoutError{fmt.Sprintf("the guest did not reach its agent by the boot timeout (hypervisor.boot_timeout)%s", tailOf(console))}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// save saves the template VM's state and then template.json, which
// records the caller's parameters (base), which the key was computed
// from, not those withSlots adds: stale() recomputes the key.
func (t Template) save(ctx context.Context, vm hypervisor.Hypervisor, key string, base hypervisor.Config) error {
	tm, ok := vm.(hypervisor.Templater)
	if !ok {
		return errors.New("this hypervisor cannot save templates")
	}
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := tm.SaveTemplate(sctx, t.state()); err != nil {
		return err
	}
	info := TemplateInfo{Key: key, Created: time.Now().UTC(), Binary: base.Binary, Kernel: base.Kernel, Initrd: base.Initrd,
		Memory: base.MemoryMiB, VCPUs: base.VCPUs, Machine: base.Machine, Accel: string(base.Accel), Params: base.KernelParams}
	b, _ := json.MarshalIndent(info, "", "  ")
	tmp := t.meta() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, t.meta())
}

// startClone starts a VM of c (a clone's configuration: the template's
// devices, its memory file mapped privately, incoming) and restores the
// template's state into it. When the restore fails, the VM is stopped and
// the template, corrupt or stale, removed: the next sandbox rebuilds it.
func (f *Factory) startClone(ctx context.Context, t Template, c hypervisor.Config) (hypervisor.Hypervisor, error) {
	if err := t.check(c.MemoryMiB); err != nil {
		t.remove()
		return nil, err
	}
	vm, err := f.vmm.New(c)
	if err != nil {
		return nil, err
	}
	tm, ok := vm.(hypervisor.Templater)
	if !ok {
		return nil, errors.New("this hypervisor cannot restore templates")
	}
	if err := vm.Start(ctx); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := tm.RestoreTemplate(rctx, t.state()); err != nil {
		vm.Stop(ctx, stopTimeout)
		t.remove()
		return nil, err
	}
	// The clone's disk is not the template's placeholder, which the
	// template's guest probed (its warm-up loads virtio_blk; a kernel
	// with the driver built in probes it at boot): told the size, the
	// guest reads the clone's own capacity. The agent waits for it
	// before mounting. One QMP command, a few ms.
	if ds, ok := vm.(hypervisor.DiskSizer); ok {
		for _, d := range c.Disks {
			if err := ds.AnnounceDiskSize(rctx, d.ID, d.Size); err != nil {
				vm.Stop(ctx, stopTimeout)
				return nil, err
			}
		}
	}
	return vm, nil
}

// warmTemplate checks the template guest's agent version and has it go
// through a container's creation path once (protocol.MethodWarm), without
// mounting anything: a 9p share mounted even once would block the save.
func warmTemplate(ctx context.Context, agentSocket string, deadline time.Time) error {
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	agent, err := agentclient.Dial(wctx, agentSocket)
	if err != nil {
		return fmt.Errorf("template guest's agent: %w", err)
	}
	defer agent.Close()
	if _, err := agent.Ping(wctx); err != nil {
		return fmt.Errorf("template guest's agent: %w", err)
	}
	if _, err := agent.Warm(wctx, &protocol.WarmRequest{Spec: warmSpec()}); err != nil {
		slog.Debug("warming the template up", "error", err)
	}
	return nil
}

// warmSpec is a spec like those sandboxes send (the one `skiff spec`
// writes, its root where a pooled VM's is).
func warmSpec() *specs.Spec {
	spec := oci.DefaultSpec()
	spec.Root.Path = filepath.Join(hostfs.GuestShareDir, "rootfs", poolContent)
	return spec
}

// prune removes stale templates (their kernel, initrd or QEMU changed)
// that nobody is building, and the least recently used beyond
// maxTemplates.
func (f *Factory) prune(keep string) {
	ents, _ := os.ReadDir(f.dir)
	type kept struct {
		name string
		used time.Time
	}
	var live []kept
	for _, e := range ents {
		if !e.IsDir() || e.Name() == keep || e.Name() == poolDirName {
			continue
		}
		meta := filepath.Join(f.dir, e.Name(), "template.json")
		var info TemplateInfo
		b, err := os.ReadFile(meta)
		if err == nil && json.Unmarshal(b, &info) == nil && !info.stale() {
			if fi, err := os.Stat(meta); err == nil {
				live = append(live, kept{e.Name(), fi.ModTime()})
			}
			continue
		}
		f.removeTemplate(e.Name())
	}
	// Templates live in RAM (factory.dir is on tmpfs by default): beyond
	// maxTemplates, those used least recently go.
	sort.Slice(live, func(i, j int) bool { return live[i].used.After(live[j].used) })
	for _, k := range live[min(len(live), maxTemplates-1):] {
		f.removeTemplate(k.name)
	}
}

// maxTemplates is how many templates (VM sizes, kernels...) a factory
// directory keeps.
const maxTemplates = 4

// removeTemplate removes the template of key unless someone is building
// it. Clones of it keep their mappings of its memory file.
func (f *Factory) removeTemplate(key string) {
	lock, err := os.OpenFile(filepath.Join(f.dir, key+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return
	}
	defer lock.Close()
	if flock.Try(lock.Fd()) {
		os.RemoveAll(filepath.Join(f.dir, key))
		os.Remove(lock.Name())
	}
}

// Templates returns the complete templates.
func (f *Factory) Templates() ([]TemplateInfo, error) {
	ents, err := os.ReadDir(f.dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []TemplateInfo
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(f.dir, e.Name(), "template.json"))
		if err != nil {
			continue
		}
		var info TemplateInfo
		if json.Unmarshal(b, &info) == nil {
			out = append(out, info)
		}
	}
	return out, nil
}

// Destroy stops every waiting pooled VM and removes every template.
// Pooled VMs that sandboxes took stay: they are those sandboxes' VMs.
func (f *Factory) Destroy() error {
	if err := f.DestroyPool(); err != nil {
		return err
	}
	ents, err := os.ReadDir(f.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if e.Name() == poolDirName || e.Name() == stoppedFile {
			continue
		}
		if err := os.RemoveAll(filepath.Join(f.dir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	// The factory directory stays, with the moment of this destroy that
	// fillers started before it obey.
	os.Remove(f.pool().Dir) // only if empty
	return errors.Join(errs...)
}

// DestroyPool stops every waiting pooled VM; templates stay. Fillers
// started before it stop (their turn may come after it), and it waits for
// the one at work to do so: it would start VMs behind its back.
func (f *Factory) DestroyPool() error {
	if _, err := os.Stat(f.dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := f.markDestroyed(); err != nil {
		return fmt.Errorf("tell the pool's fillers to stop: %w", err)
	}
	if lock, err := os.OpenFile(filepath.Join(f.dir, "pool.lock"), os.O_RDWR, 0); err == nil {
		defer lock.Close()
		if err := flock.Within(lock.Fd(), fillLockWait); err != nil {
			return fmt.Errorf("wait for the pool's filler: %w", err)
		}
	}
	return f.pool().DestroyIdle()
}

// check tells whether the template's files are still what was saved, as
// far as a stat shows: a memory file deleted behind skiff's back would be
// created anew by QEMU, empty, and the clone crash once it runs; a
// truncated one would stop QEMU at its start.
func (t Template) check(memoryMiB int) error {
	fi, err := os.Stat(t.memory())
	if err != nil {
		return fmt.Errorf("VM template's memory: %w", err)
	}
	if want := int64(memoryMiB) << 20; !fi.Mode().IsRegular() || fi.Size() != want {
		return fmt.Errorf("VM template's memory %s: %d bytes, want a file of %d", t.memory(), fi.Size(), want)
	}
	if fi, err := os.Stat(t.state()); err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
		return fmt.Errorf("VM template's state %s is missing or empty", t.state())
	}
	return nil
}

// remove drops one template, after a restore from it failed.
func (t Template) remove() {
	slog.Warn("removing VM template that failed to restore", "dir", t.Dir)
	os.RemoveAll(t.Dir)
}

// tailOf is the end of a template VM's console, as a sandbox's VM's is
// quoted (guestTail).
func tailOf(console string) string {
	return guestTail(hypervisor.Config{ConsoleLog: console})
}

// guestTimeoutError is a template guest that never came up: a cold boot of
// the same guest would not either, so it fails the sandbox.
type guestTimeoutError struct{ msg string }

func (e *guestTimeoutError) Error() string { return e.msg }
