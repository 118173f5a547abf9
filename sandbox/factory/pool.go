package factory

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/skiff-oci/skiff/internal/proc"

	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agentclient"
	"github.com/skiff-oci/skiff/agentclient/protocol"
	"github.com/skiff-oci/skiff/config"
	"github.com/skiff-oci/skiff/hypervisor"
	"github.com/skiff-oci/skiff/internal/flock"
	"github.com/skiff-oci/skiff/sandbox/hostdisk"
	"github.com/skiff-oci/skiff/sandbox/hostfs"
)

// The pool ([factory] cache = N): N VMs restored from the template in
// advance, reseeded, their agent answering, for create to take. What a
// restore costs (starting QEMU, loading the template's state, the guest's
// first steps, which TCG translates for the first time) is paid before the
// sandbox is asked for.
//
// A pooled VM cannot know its sandbox's files or network beforehand, so
// they are attached when it is taken, without touching the VM:
//   - each shared-filesystem slot of the template exports an empty
//     directory of the member (slots/TAG); the sandbox's rootfs, or its
//     state directory's dirs/ or files/ (shares.go), is bind-mounted on
//     slots/TAG/c, which QEMU's 9p server reaches
//     by walking from the export, and the guest finds it at
//     /run/skiff/shares/TAG/c. Read-only shares are read-only bind mounts
//     (every mount below them too), enforced by the host kernel.
//   - the NIC slot's tap waits in a network namespace pinned on the
//     member's netns file; it is moved into the sandbox's namespace and
//     wired there like a tap skiff creates.
// Both need the caller to share QEMU's mount namespace: a caller in another
// one restores its own VM instead.
//
// Layout: <factory dir>/pool/<member>/ with member.json, lock (held by
// whoever fills or uses the member), the VM's sockets, logs and pidfile,
// slots/ and netns. A sandbox that took a member links its state
// directory's VM files to the member's and "vm" to the member directory.

const (
	poolDirName = "pool"
	// poolContent is the directory under a slot where the share appears.
	poolContent = "c"
	// memberLink in a sandbox's state directory names its pooled VM's dir.
	memberLink = "vm"
)

// Pool is the directory of pooled VMs.
type Pool struct {
	Dir string
	vmm VMM
}

// pool of the factory.
func (f *Factory) pool() Pool { return Pool{Dir: filepath.Join(f.dir, poolDirName), vmm: f.vmm} }

// Pool lists the pooled VMs: waiting, being filled, or taken.
func (f *Factory) Pool() []MemberInfo { return f.pool().List() }

type member struct {
	Dir string
	vmm VMM
}

func (m member) meta() string     { return filepath.Join(m.Dir, "member.json") }
func (m member) lockFile() string { return filepath.Join(m.Dir, "lock") }
func (m member) netns() string    { return filepath.Join(m.Dir, "netns") }
func (m member) slot(tag string) string {
	return filepath.Join(m.Dir, "slots", tag)
}
func (m member) content(tag string) string { return filepath.Join(m.slot(tag), poolContent) }

// disk is the member's scratch disk file: it becomes the sandbox's.
func (m member) disk() string { return filepath.Join(m.Dir, "scratch.img") }

// vmFiles are the member's VM files, by the name a state directory gives
// them (Dir's accessors).
func (m member) vmFiles() map[string]string {
	files := map[string]string{}
	for _, f := range []string{"agent.sock", "qmp.sock", "console.log", "qemu.log", "qemu.pid"} {
		files[f] = filepath.Join(m.Dir, f)
	}
	return files
}

func (m member) vmConfig(c hypervisor.Config) hypervisor.Config {
	f := m.vmFiles()
	c.AgentSocket, c.QMPSocket, c.ConsoleLog, c.StderrLog, c.PIDFile = f["agent.sock"], f["qmp.sock"], f["console.log"], f["qemu.log"], f["qemu.pid"]
	// A pooled VM outlives its filler and dies with the shim that takes
	// it: the shim binds its guard here (hypervisor.AdoptQEMU).
	c.GuardSocket = filepath.Join(m.Dir, "guard.sock")
	return c
}

// MemberInfo is member.json.
type MemberInfo struct {
	ID      string    `json:"id"`
	Key     string    `json:"key"` // the template's
	Created time.Time `json:"created"`
	Ready   bool      `json:"ready"`
	// Sandbox is the state directory of the sandbox that took it.
	Sandbox string `json:"sandbox,omitempty"`
	// QEMUPID is filled in by List: 0 when its QEMU is not running.
	QEMUPID int `json:"-"`
}

func (m member) read() (MemberInfo, error) {
	var info MemberInfo
	b, err := os.ReadFile(m.meta())
	if err == nil {
		err = json.Unmarshal(b, &info)
	}
	return info, err
}

func (m member) write(info MemberInfo) error {
	b, _ := json.MarshalIndent(info, "", "  ")
	tmp := m.meta() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, m.meta())
}

// qemuPID is the member's running QEMU, 0 if none.
func (m member) qemuPID() int { return m.vmm.Running(m.vmFiles()["qemu.pid"]) }

// lock takes the member's lock without waiting; nil if someone holds it.
func (m member) lock() *os.File {
	f, err := os.OpenFile(m.lockFile(), os.O_RDWR, 0)
	if err != nil {
		return nil
	}
	if !flock.Try(f.Fd()) {
		f.Close()
		return nil
	}
	return f
}

// remove kills the member's VM and removes the member. Its directory is
// removed only once nothing is mounted below it: a bind mount there is a
// sandbox's rootfs.
func (m member) remove() error {
	var errs []error
	if err := m.vmm.Kill(m.vmFiles()["qemu.pid"]); err != nil {
		errs = append(errs, err)
	}
	if err := hostfs.Unmount(m.Dir); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		errs = append(errs, hostfs.RemoveDir(m.Dir))
	}
	return errors.Join(errs...)
}

func (p Pool) members() []member {
	ents, _ := os.ReadDir(p.Dir)
	var out []member
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, member{Dir: filepath.Join(p.Dir, e.Name()), vmm: p.vmm})
		}
	}
	return out
}

// List returns every member, ready, being filled or taken.
func (p Pool) List() []MemberInfo {
	var out []MemberInfo
	for _, m := range p.members() {
		info, err := m.read()
		if err != nil {
			continue
		}
		info.QEMUPID = m.qemuPID()
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}

// sweep removes members nobody holds that cannot serve anymore (their
// filler died, their VM is gone, their template is stale) and returns how
// many members of key are ready or being filled. Ready members of other
// keys whose template exists are another configuration's pool: left.
func (p Pool) sweep(key string) int {
	n := 0
	for _, m := range p.members() {
		lock := m.lock()
		info, err := m.read()
		if lock == nil {
			// Being filled, or taken by a sandbox whose shim runs.
			if err != nil || (info.Sandbox == "" && info.Key == key) {
				n++
			}
			continue
		}
		running := err == nil && m.qemuPID() != 0
		switch {
		case running && info.Ready && info.Sandbox == "" && info.Key == key:
			n++
		case running && info.Ready && info.Sandbox == "" && p.hasTemplate(info.Key):
			// Another configuration's pool (another VM size, kernel...)
			// sharing the factory directory: its fillers count it.
		case running && info.Sandbox != "":
			// A sandbox's VM whose shim is gone: delete --force
			// removes it with the sandbox.
		default:
			if rerr := m.remove(); rerr != nil {
				slog.Warn("pool: cannot remove member", "dir", m.Dir, "error", rerr)
			}
		}
		lock.Close()
	}
	return n
}

// trim stops up to n ready, untaken members of key.
func (p Pool) trim(key string, n int) {
	for _, m := range p.members() {
		if n <= 0 {
			return
		}
		lock := m.lock()
		if lock == nil {
			continue
		}
		if info, err := m.read(); err == nil && info.Ready && info.Sandbox == "" && info.Key == key {
			if err := m.remove(); err != nil {
				slog.Warn("pool: cannot remove member", "dir", m.Dir, "error", err)
			}
			n--
		}
		lock.Close()
	}
}

// hasTemplate reports whether the template of key still exists: stale
// templates are pruned, and their pooled VMs are of no use then.
func (p Pool) hasTemplate(key string) bool {
	_, err := os.Stat(Template{Dir: filepath.Join(filepath.Dir(p.Dir), key)}.meta())
	return err == nil
}

// DestroyIdle stops and removes every member no sandbox took.
// A member whose lock is held is being taken by a sandbox (or filled by a
// filler that started since): it is left, never pulled from under it.
func (p Pool) DestroyIdle() error {
	var errs []error
	for _, m := range p.members() {
		lock := m.lock()
		if lock == nil {
			continue
		}
		if info, err := m.read(); err != nil || info.Sandbox == "" {
			if err := m.remove(); err != nil {
				errs = append(errs, err)
			}
		}
		lock.Close()
	}
	return errors.Join(errs...)
}

// fillLockWait bounds a filler's wait for another one to finish.
const fillLockWait = 5 * time.Minute

// Fill starts pooled VMs until factory.cache are ready or being filled,
// building the template first if needed. Fillers take turns: a second one
// waits, then finds the pool full or fills what is missing.
func (f *Factory) Fill(ctx context.Context) error { return f.fill(ctx, false) }

// Refill is Fill for a shim that took a VM or found none: it does nothing
// when another filler already waits its turn, which will fill for it too.
func (f *Factory) Refill(ctx context.Context) error { return f.fill(ctx, true) }

func (f *Factory) fill(ctx context.Context, once bool) error {
	if f.cfg.Factory.Cache <= 0 || !f.cfg.Factory.Template {
		return nil
	}
	if err := CheckGuest(f.cfg); err != nil {
		return err
	}
	base, _, err := f.BaseConfig(ctx)
	if err != nil {
		return err
	}
	if err := f.host.joinRoot(); err != nil {
		slog.Debug("pool: leaving the caller's cgroups", "error", err)
	}
	if err := f.host.yield(); err != nil {
		slog.Debug("pool: lowering the filler's priority", "error", err)
	}
	p := f.pool()
	if err := f.ensureDir(); err != nil {
		return err
	}
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return fmt.Errorf("pool %s: %w", p.Dir, err)
	}
	forked, err := proc.StartTime(os.Getpid())
	if err != nil {
		return fmt.Errorf("pool: this filler's start time: %w", err)
	}
	lock, err := f.fillTurn(once)
	if lock == nil {
		return err
	}
	defer lock.Close()
	for {
		if f.destroyedSince(forked) {
			slog.Debug("pool: destroyed since this filler started: it fills no more")
			return nil
		}
		t, err := f.Ensure(ctx, base)
		if err != nil {
			return err
		}
		key, err := templateKey(base)
		if err != nil {
			return err
		}
		target := f.poolTarget(time.Now())
		if n := p.sweep(key); n >= target {
			// cache was lowered, or the start rate fell: stop what
			// is beyond it.
			if n > target {
				slog.Debug("pool: trimming", "waiting", n, "target", f.describeTarget(target))
			}
			p.trim(key, n-target)
			return nil
		}
		if err := f.fillOne(ctx, base, t, key, forked); errors.Is(err, errDestroyed) {
			slog.Debug("pool: destroyed while this filler restored a VM: it fills no more")
			return nil
		} else if err != nil {
			return fmt.Errorf("pool: %w", err)
		}
	}
}

// fillTurn waits for this filler's turn and returns the lock it then
// holds. One filler works (pool.lock), one more may wait for it
// (pool.next): a burst of sandboxes finding the pool empty starts one
// filler each, and the waiting one will fill for all of them. With once,
// a filler that finds another waiting returns nil and no error.
func (f *Factory) fillTurn(once bool) (*os.File, error) {
	next, err := os.OpenFile(filepath.Join(f.dir, "pool.next"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	defer next.Close()
	if !flock.Try(next.Fd()) {
		if once {
			slog.Debug("pool: a filler is already waiting its turn")
			return nil, nil
		}
		if err := flock.Within(next.Fd(), fillLockWait); err != nil {
			return nil, fmt.Errorf("pool: wait for %s: %w", next.Name(), err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(f.dir, "pool.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := flock.Within(lock.Fd(), fillLockWait); err != nil {
		lock.Close()
		return nil, fmt.Errorf("pool: another filler holds %s: %w", lock.Name(), err)
	}
	return lock, nil
}

// stoppedFile holds the moment of the last destroy, in proc's clock ticks.
const stoppedFile = "pool.stopped"

// markDestroyed tells fillers that started before now to stop: the shim of
// a sandbox that just ran may have started one that has not yet taken its
// turn, and it would fill the pool again behind destroy's back.
func (f *Factory) markDestroyed() error {
	if err := f.ensureDir(); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(f.dir, stoppedFile), []byte(strconv.FormatUint(proc.Now(), 10)), 0o600)
}

// destroyedSince tells whether the pool was destroyed after forked (a
// filler's start time): that filler was started for a pool that is gone.
// A destroy in the same tick (10 ms) does not count: `factory init` run
// right after a destroy must fill.
func (f *Factory) destroyedSince(forked uint64) bool {
	b, err := os.ReadFile(filepath.Join(f.dir, stoppedFile))
	if err != nil {
		return false
	}
	at, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return err == nil && at > forked
}

// errDestroyed stops a fill whose pool was destroyed while it restored a VM.
var errDestroyed = errors.New("the pool was destroyed meanwhile")

// fillOne restores one VM from t into a new member and leaves it running,
// reseeded, with no host connected. On error nothing of it is left, nor
// when the pool was destroyed since forked.
func (f *Factory) fillOne(ctx context.Context, base hypervisor.Config, t Template, key string, forked uint64) (err error) {
	m, lock, err := f.pool().newMember(key)
	if err != nil {
		return err
	}
	defer lock.Close()
	var vm hypervisor.Hypervisor
	defer func() {
		if err != nil {
			if vm != nil {
				vm.Stop(context.Background(), stopTimeout)
			}
			m.remove()
		}
	}()
	size, err := config.ScratchBytes(f.cfg.Storage.ScratchSize)
	if err != nil {
		return err
	}
	c, err := m.cloneConfig(base, t, size, f.host.protect, f.host.makeDisk)
	if err != nil {
		return err
	}
	release, err := f.host.spareTaps(c.NetDevices, m.netns())
	if err != nil {
		return err
	}
	// QEMU holds its own copies of the taps; the pinned namespace keeps
	// them where a sandbox will look.
	defer release()
	if vm, err = f.startClone(ctx, t, c); err != nil {
		return err
	}
	agent, err := t.answer(ctx, vm, c.AgentSocket, true)
	if err != nil {
		return fmt.Errorf("pooled VM's agent: %w", err)
	}
	f.warmPooled(ctx, agent, m, size)
	agent.Close()
	if f.destroyedSince(forked) {
		return errDestroyed
	}
	info, err := m.read()
	if err == nil {
		info.Ready = true
		err = m.write(info)
	}
	if err != nil {
		return err
	}
	slog.Debug("pool: VM ready", "member", m.Dir, "pid", vm.PID())
	return nil
}

// newMember makes the directory of a new member of key, locked.
func (p Pool) newMember(key string) (member, *os.File, error) {
	id := make([]byte, 6)
	rand.Read(id)
	m := member{Dir: filepath.Join(p.Dir, hex.EncodeToString(id)), vmm: p.vmm}
	if err := os.Mkdir(m.Dir, 0o700); err != nil {
		return member{}, nil, err
	}
	lock, err := os.OpenFile(m.lockFile(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		os.RemoveAll(m.Dir)
		return member{}, nil, err
	}
	unix.Flock(int(lock.Fd()), unix.LOCK_EX) // new: nobody else has it
	if err := m.write(MemberInfo{ID: filepath.Base(m.Dir), Key: key, Created: time.Now().UTC()}); err != nil {
		lock.Close()
		os.RemoveAll(m.Dir)
		return member{}, nil, err
	}
	return m, lock, nil
}

// cloneConfig is the VM of a member: a clone of t whose every share slot
// exports an empty directory of the member's, where a sandbox's files
// will be bind-mounted.
func (m member) cloneConfig(base hypervisor.Config, t Template, size int64, protect func(string) error,
	makeDisk func(string, int64, bool) error) (hypervisor.Config, error) {
	c := hypervisor.Config{
		Name: "skiff-pool-" + filepath.Base(m.Dir), Binary: base.Binary, Kernel: base.Kernel, Initrd: base.Initrd,
		KernelParams: base.KernelParams, Machine: base.Machine, Accel: base.Accel, VCPUs: base.VCPUs, MemoryMiB: base.MemoryMiB,
	}
	for _, tag := range slotTagsN(slotsFor(c.Machine)) {
		// The guest must create nothing beside the sandbox's share,
		// mounted on content() later: the slot is read-only to it.
		if err := os.MkdirAll(m.content(tag), 0o700); err != nil {
			return c, err
		}
		if err := protect(m.slot(tag)); err != nil {
			return c, err
		}
		c.Shares = append(c.Shares, hypervisor.Share{Tag: tag, HostPath: m.slot(tag)})
	}
	c = m.vmConfig(withSlots(c, t.empty()))
	c.MemoryFile, c.MemoryShared, c.Incoming = t.memory(), false, true
	// The disk a sandbox taking the VM will use, at the configured size
	// (a sandbox asking another size is not served by the pool), made
	// into a filesystem here, off any sandbox's start.
	if err := makeDisk(m.disk(), size, true); err != nil {
		return c, err
	}
	c.Disks = []hypervisor.Disk{{ID: hostdisk.DiskID, Path: m.disk(), Serial: protocol.ScratchSerial, Size: size}}
	return c, nil
}

// warmPooled has a pooled VM run a throwaway container once, best effort:
// a guest that cannot warm up still serves.
func (f *Factory) warmPooled(ctx context.Context, agent *agentclient.Client, m member, size int64) {
	bctx, cancel := context.WithTimeout(ctx, f.cfg.Hypervisor.BootTimeoutDuration())
	defer cancel()
	spec := warmSpec()
	warmed, err := agent.Warm(bctx, &protocol.WarmRequest{
		Share: protocol.Share{Tag: "rootfs", FSType: "9p", GuestPath: spec.Root.Path, ReadOnly: true},
		Spec:  spec,
		Run:   true,
		// The VM's disk is its sandbox's to be (cloneConfig): mounted
		// now, a sandbox's first scratch mount costs nothing.
		Scratch: &protocol.Scratch{Serial: protocol.ScratchSerial, Size: size},
	})
	if err != nil {
		slog.Debug("pool: warming the VM up", "error", err)
		return
	}
	slog.Debug("pool: VM warmed up", "member", m.Dir, "throwawayContainer", warmed.Ran)
}

// sameMountNS reports whether the file servers of the VM whose QEMU is pid
// see the mounts this process makes. They are QEMU itself (unconfined) or
// run in the mount namespace of QEMU's guard, its parent (a jailed QEMU
// has one of its own, and serves no file).
func sameMountNS(pid int) bool {
	guard, err := proc.Parent(pid)
	if err != nil {
		return false
	}
	mine, err1 := os.Readlink("/proc/self/ns/mnt")
	theirs, err2 := os.Readlink("/proc/" + strconv.Itoa(guard) + "/ns/mnt")
	return err1 == nil && err2 == nil && mine == theirs
}

// take claims a ready member of key for the sandbox whose directory is
// sandbox: it returns the member, its lock (held for the sandbox's life)
// and its QEMU's PID, or nil when none is ready.
func (p Pool) take(key, sandbox string) (*member, *os.File, int) {
	for _, m := range p.members() {
		lock := m.lock()
		if lock == nil {
			continue
		}
		info, err := m.read()
		if err != nil || !info.Ready || info.Sandbox != "" || info.Key != key {
			lock.Close()
			continue
		}
		pid := m.qemuPID()
		if pid == 0 {
			m.remove() // its VM died while waiting
			lock.Close()
			continue
		}
		if !sameMountNS(pid) {
			lock.Close()
			return nil, nil, 0
		}
		info.Sandbox = sandbox
		if err := m.write(info); err != nil {
			lock.Close()
			continue
		}
		return &m, lock, pid
	}
	return nil, nil, 0
}

// memberOf returns the pooled VM directory a sandbox took, "" if none.
func memberOf(sandbox string) string {
	target, err := os.Readlink(filepath.Join(sandbox, memberLink))
	if err != nil || !strings.HasPrefix(target, "/") {
		return ""
	}
	return target
}

// RemoveMemberOf stops and removes the pooled VM the sandbox whose
// directory is sandbox took, if any: delete --force after its shim died.
func RemoveMemberOf(sandbox string) error { return removeMemberOf(sandbox, QEMU) }

func removeMemberOf(sandbox string, vmm VMM) error {
	dir := memberOf(sandbox)
	if dir == "" {
		return nil
	}
	m := member{Dir: dir, vmm: vmm}
	if info, err := m.read(); err == nil && info.Sandbox != sandbox {
		return nil // not ours (any more)
	}
	return m.remove()
}

// PoolKey is the template key of the VMs the pool holds (those of the
// default size), "" if it cannot be computed (no guest image...).
func (f *Factory) PoolKey(ctx context.Context) string {
	base, _, err := f.BaseConfig(ctx)
	if err != nil {
		return ""
	}
	key, _ := templateKey(base)
	return key
}
