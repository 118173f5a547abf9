package factory

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/skiff-oci/skiff/agentclient"
	"github.com/skiff-oci/skiff/config"
	"github.com/skiff-oci/skiff/hypervisor"
	"github.com/skiff-oci/skiff/internal/logtail"
	"github.com/skiff-oci/skiff/sandbox/hostcgroup"
	"github.com/skiff-oci/skiff/sandbox/hostfs"
	"github.com/skiff-oci/skiff/sandbox/hostnet"
)

// Request is what a sandbox asks of the factory.
type Request struct {
	// Config is the sandbox's VM: its size, shares, and files (sockets,
	// logs, pidfile) in the sandbox's directory. No NICs yet.
	Config hypervisor.Config
	// NICs tells how many NICs the sandbox's network will want; asked
	// only when the pool could serve the sandbox (it enters the netns).
	NICs func() (int, error)
	// Dir is the sandbox's directory: a pooled VM is linked there, and
	// the host cgroups recorded there are a pooled VM's to join.
	Dir string
	Log *slog.Logger
}

// Lease is a VM on its way to a sandbox, from Reserve to Release.
type Lease struct {
	f   *Factory
	req Request
	// pooled is the VM taken from the pool, if any.
	pooled *pooledVM
	// refill says the pool wants a filler once the sandbox runs.
	refill bool
	// releaseSpare closes the spare taps of a VM restored here.
	releaseSpare func()
}

// VM is a sandbox's VM: running, its agent answering.
type VM struct {
	hypervisor.Hypervisor
	Agent *agentclient.Client
	// From says where it came from, for the log: "cold", "template" or
	// "pool".
	From   string
	exited chan struct{}
}

// Exited is closed once the VMM has exited.
func (v *VM) Exited() <-chan struct{} { return v.exited }

func newVM(hv hypervisor.Hypervisor, agent *agentclient.Client, from string) *VM {
	v := &VM{Hypervisor: hv, Agent: agent, From: from, exited: make(chan struct{})}
	go func() {
		hv.Wait()
		close(v.exited)
	}()
	return v
}

// Reserve takes a VM from the pool for r when the pool has one that fits;
// otherwise the VM is made by Start. It links the sandbox's directory to a
// pooled VM at once, so that Release and delete find it whatever happens
// next.
func (f *Factory) Reserve(r Request) *Lease {
	if r.Log == nil {
		r.Log = slog.Default()
	}
	l := &Lease{f: f, req: r}
	l.pooled, l.refill = f.takePooled(r)
	return l
}

// BringTap is how the sandbox's network gets the VM's taps: those of a
// pooled VM are brought from where they wait; nil means the network
// creates them.
func (l *Lease) BringTap() hostnet.BringTap {
	if l.pooled == nil {
		return nil
	}
	return hostnet.BringFrom(l.pooled.m.netns())
}

// Start makes the VM with the NICs nics, fits the share plan and the
// network to it (where the guest finds the shares, which MACs its NICs
// have) and returns it once its agent answered. A template that cannot be
// built or restored is a warning and a cold boot, never a failure. On
// error, no VM of it runs; Release still undoes what the lease holds.
func (l *Lease) Start(ctx context.Context, nics []hypervisor.NetDevice, plan *hostfs.Plan, nw *hostnet.Network) (*VM, error) {
	c := l.req.Config
	c.NetDevices = nics
	clone, plug := pluggable(c)
	if l.pooled != nil {
		vm, err := l.adopt(clone, plan)
		if err == nil {
			err = plugDisks(ctx, vm, plug)
		}
		if err != nil {
			return nil, fmt.Errorf("start VM: %w%s", err, guestTail(c))
		}
		nw.RestoredNICs(TemplateMAC)
		return vm, nil
	}
	if l.f.cfg.Factory.Template && l.f.clonesAllowed() && templateEligible(clone) {
		vm, err := l.restore(ctx, clone)
		if err == nil {
			if err = plugDisks(ctx, vm, plug); err != nil {
				return nil, fmt.Errorf("start VM: %w%s", err, guestTail(c))
			}
			nw.RestoredNICs(TemplateMAC)
			return vm, nil
		}
		var timeout *guestTimeoutError
		if errors.As(err, &timeout) {
			return nil, fmt.Errorf("start VM: %w%s", err, guestTail(c))
		}
		if errors.Is(err, errTemplateBusy) {
			l.req.Log.Debug("VM template being built elsewhere; booting cold")
		} else {
			l.req.Log.Warn("VM template unusable; booting cold", "error", err)
		}
	}
	fs, why := l.f.coldFS()
	if why != nil {
		l.req.Log.Debug("sharing files over 9p", "why", why)
	}
	c.SharedFS = fs
	plan.ServeWith(fs)
	return l.boot(ctx, c)
}

// boot starts the VM cold and waits for its agent, up to the boot
// timeout.
func (l *Lease) boot(ctx context.Context, c hypervisor.Config) (*VM, error) {
	hv, err := l.f.vmm.New(c)
	if err == nil {
		err = hv.Start(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("start VM: %w%s", err, guestTail(c))
	}
	vm := newVM(hv, nil, "cold")
	timeout := l.f.cfg.Hypervisor.BootTimeoutDuration()
	bctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	go func() {
		select {
		case <-vm.exited:
			cancel()
		case <-bctx.Done():
		}
	}()
	agent, err := agentclient.Dial(bctx, c.AgentSocket)
	if err == nil {
		if _, err = agent.Ping(bctx); err != nil {
			agent.Close()
		}
	}
	if err == nil {
		l.req.Log.Debug("agent answered")
		vm.Agent = agent
		return vm, nil
	}
	// Why it failed is read before the VM is stopped: its exit is the
	// answer only if it came first. The channel's end may precede the
	// VMM's exit a little: a moment is given for it.
	var why error
	select {
	case <-vm.exited:
		why = fmt.Errorf("the VM exited while booting%s", guestTail(c))
	case <-time.After(exitGrace):
		if bctx.Err() != nil && ctx.Err() == nil {
			why = fmt.Errorf("the guest did not answer within %v (hypervisor.boot_timeout)%s", timeout, guestTail(c))
		} else {
			why = fmt.Errorf("guest agent: %w%s", err, guestTail(c))
		}
	}
	hv.Stop(context.Background(), stopTimeout)
	return nil, why
}

// exitGrace is how long a failed boot waits for the VMM's exit to arrive
// after its agent channel ended.
const exitGrace = 500 * time.Millisecond

// restore starts a clone of the template of c, loads its state and
// reseeds the guest.
func (l *Lease) restore(ctx context.Context, c hypervisor.Config) (*VM, error) {
	t, err := l.f.Ensure(ctx, c)
	if err != nil {
		return nil, err
	}
	c = withSlots(c, t.empty())
	c.MemoryFile, c.MemoryShared, c.Incoming = t.memory(), false, true
	// Slots the sandbox does not fill get taps too: the device must offer
	// what the template negotiated. They stay open until Release.
	release, err := l.f.host.spareTaps(c.NetDevices, "")
	if err != nil {
		return nil, err
	}
	hv, err := l.f.startClone(ctx, t, c)
	if err != nil {
		release()
		return nil, err
	}
	agent, err := t.answer(ctx, hv, c.AgentSocket, false)
	if err != nil {
		hv.Stop(context.Background(), stopTimeout)
		release()
		return nil, err
	}
	l.releaseSpare = release
	l.req.Log.Debug("VM restored from template", "template", t.Dir)
	return newVM(hv, agent, "template"), nil
}

// Refill starts a filler in the background to replace the pooled VM this
// lease took, or to fill a pool it found empty: this binary with the
// caller's global flags, `factory fill`, the configuration on its stdin.
// It returns at once (starting a process is ~6 ms the sandbox's start
// need not wait for); nobody waits for the filler beyond reaping it.
func (l *Lease) Refill() {
	if !l.refill {
		return
	}
	go l.startFiller()
}

func (l *Lease) startFiller() {
	args := globalArgs(os.Args)
	r, w, err := os.Pipe()
	if err != nil {
		return
	}
	defer r.Close()
	b, _ := json.Marshal(l.f.cfg)
	w.Write(b) // a config is far below a pipe's buffer
	w.Close()
	cmd := exec.Command(args[0], append(args[1:], "factory", "fill", "--config-stdin")...)
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		l.req.Log.Warn("cannot refill the pool", "error", err)
		return
	}
	go cmd.Wait()
}

// globalArgs is a command line up to its verb ("shim"): the binary and
// the global flags create gave it.
func globalArgs(argv []string) []string {
	for i, a := range argv {
		if a == "shim" {
			return append([]string{}, argv[:i]...)
		}
	}
	return argv[:1]
}

// PooledDisk is the scratch disk file of a VM taken from the pool (its
// QEMU opened it, and its filler made the filesystem on it), "" for a VM
// the sandbox's own file is given to.
func (l *Lease) PooledDisk() string {
	if l.pooled == nil {
		return ""
	}
	return l.pooled.m.disk()
}

// Release undoes what the factory holds for the sandbox once its VM has
// stopped (or never started): a restored VM's spare taps, a pooled VM's
// member and lock.
func (l *Lease) Release() {
	if l.releaseSpare != nil {
		l.releaseSpare()
	}
	if l.pooled != nil {
		if err := removeMemberOf(l.req.Dir, l.f.vmm); err != nil {
			l.req.Log.Warn("remove pooled VM", "error", err)
		}
		l.pooled.lock.Close()
	}
}

// guestTail quotes the end of the guest console and of QEMU's stderr, so
// that a failed boot explains itself.
func guestTail(c hypervisor.Config) string {
	var b strings.Builder
	for _, f := range []struct{ name, path string }{{"guest console", c.ConsoleLog}, {"qemu", c.StderrLog}} {
		if f.path == "" {
			continue
		}
		if t := logtail.Console(f.path, 12); t != "" {
			fmt.Fprintf(&b, "\n--- last lines of %s (%s) ---\n%s", f.name, f.path, t)
		}
	}
	return b.String()
}

// GuestTail is guestTail for the VM files of a sandbox's directory.
func GuestTail(consoleLog, qemuLog string) string {
	return guestTail(hypervisor.Config{ConsoleLog: consoleLog, StderrLog: qemuLog})
}

// pooledVM is a VM taken from the pool, not adopted yet.
type pooledVM struct {
	m     member
	lock  *os.File // held while the sandbox lives
	agent *agentclient.Client
}

// pooledAnswerTimeout bounds the wait for a pooled VM's agent: it has
// answered before, so a VM that does not now is broken, and the sandbox
// restores a VM of its own instead.
const pooledAnswerTimeout = 3 * time.Second

// takePooled takes a VM from the pool for r, or returns nil: no pool, a
// sandbox the pool cannot serve, or no VM ready. It reports whether the
// pool wants a filler.
func (f *Factory) takePooled(r Request) (*pooledVM, bool) {
	fc := f.cfg.Factory
	if clone, _ := pluggable(r.Config); fc.Cache <= 0 || !fc.Template || !f.clonesAllowed() || !templateEligible(clone) {
		return nil, false
	}
	if err := f.ensureDir(); err != nil {
		r.Log.Warn("not using the pool", "error", err)
		return nil, false
	}
	if n, err := r.NICs(); err != nil || n > templateNICs {
		return nil, false
	}
	// Pooled VMs have a disk of the configured size behind them.
	if size, err := config.ScratchBytes(f.cfg.Storage.ScratchSize); err != nil || r.Config.Disks[0].Size != size {
		return nil, false
	}
	key, err := templateKey(r.Config)
	if err != nil {
		return nil, false
	}
	if fc.CacheAuto {
		recordStart(f.pool().Dir, time.Now())
	}
	m, lock, _ := f.pool().take(key, r.Dir)
	if m == nil {
		// The pool ran dry (or its VMs died): fill it for the next one.
		r.Log.Debug("no pooled VM ready")
		return nil, true
	}
	link := filepath.Join(r.Dir, memberLink)
	drop := func(err error) (*pooledVM, bool) {
		r.Log.Warn("cannot use pooled VM; restoring one", "member", m.Dir, "error", err)
		os.Remove(link)
		m.remove()
		lock.Close()
		return nil, true
	}
	if err := os.Symlink(m.Dir, link); err != nil {
		return drop(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), pooledAnswerTimeout)
	defer cancel()
	agent, err := agentclient.Dial(ctx, m.vmFiles()["agent.sock"])
	if err != nil {
		return drop(err)
	}
	if _, err := agent.Ping(ctx); err != nil {
		agent.Close()
		return drop(err)
	}
	r.Log.Debug("agent answered")
	return &pooledVM{m: *m, lock: lock, agent: agent}, true
}

// adopt attaches the sandbox's shares to the pooled VM, links its files
// into the sandbox's directory and takes the VM over. plan's guest paths
// move to where the shares appear in the guest.
func (l *Lease) adopt(c hypervisor.Config, plan *hostfs.Plan) (*VM, error) {
	p := l.pooled
	for _, sh := range c.Shares {
		if err := l.f.host.bindShare(sh, p.m.content(sh.Tag)); err != nil {
			return nil, err
		}
	}
	plan.Nest(poolContent)
	for name, target := range p.m.vmFiles() {
		if err := os.Symlink(target, filepath.Join(l.req.Dir, name)); err != nil {
			return nil, fmt.Errorf("link pooled VM's %s: %w", name, err)
		}
	}
	c.NetDevices = nil // the VM has its NICs; their taps were brought
	hv, err := l.f.vmm.Adopt(p.m.vmConfig(c))
	if err != nil {
		return nil, err
	}
	// QEMU started in the filler's cgroups; the sandbox's are its now,
	// and so is the priority of a sandbox.
	if err := hostcgroup.Move(l.req.Dir, hv.PID()); err != nil {
		return nil, err
	}
	if err := l.f.host.unyield(hv.PID()); err != nil {
		return nil, fmt.Errorf("restore the pooled VM's CPU priority: %w", err)
	}
	l.req.Log.Debug("VM taken from the pool", "member", p.m.Dir, "pid", hv.PID())
	return newVM(hv, p.agent, "pool"), nil
}

// ParseFillConfig reads the configuration a shim hands `factory fill`.
func ParseFillConfig(b []byte) (*config.Config, error) {
	cfg := config.Default()
	if err := json.Unmarshal(b, cfg); err != nil {
		return nil, fmt.Errorf("factory fill: configuration on stdin: %w", err)
	}
	return cfg, nil
}

// cloneAnswerTimeout bounds the wait for a clone's first answer, about
// 0.1 s under TCG: a clone silent for longer is given up on.
const cloneAnswerTimeout = 10 * time.Second

// answer connects to a clone's agent (checking its protocol version first
// when ping) and reseeds the guest: its first answer. A clone that dies
// instead (its template's memory or state changed behind skiff's back, so
// the guest crashed) removes the template: every clone would. One that is
// only slow leaves it, since a busy host is no reason to rebuild.
func (t Template) answer(ctx context.Context, vm hypervisor.Hypervisor, socket string, ping bool) (*agentclient.Client, error) {
	actx, cancel := context.WithTimeout(ctx, cloneAnswerTimeout)
	defer cancel()
	exited := make(chan struct{})
	go func() {
		vm.Wait()
		close(exited)
	}()
	go func() {
		select {
		case <-exited:
			cancel()
		case <-actx.Done():
		}
	}()
	agent, err := agentclient.Dial(actx, socket)
	if err == nil && ping {
		_, err = agent.Ping(actx)
	}
	if err == nil {
		err = reseed(actx, agent)
	}
	if err == nil {
		return agent, nil
	}
	if agent != nil {
		agent.Close()
	}
	select {
	case <-exited:
	default:
		if actx.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("the restored guest did not answer within %v: %w", cloneAnswerTimeout, err)
		}
	}
	if ctx.Err() == nil {
		t.remove()
	}
	return nil, fmt.Errorf("the restored guest failed: %w", err)
}

// reseed gives a restored guest the host's clock and fresh entropy: every
// clone of a template starts with the template's random state.
func reseed(ctx context.Context, agent *agentclient.Client) error {
	entropy := make([]byte, 64)
	if _, err := rand.Read(entropy); err != nil {
		return fmt.Errorf("entropy for the guest: %w", err)
	}
	if err := agent.Reseed(ctx, time.Now().UnixNano(), entropy); err != nil {
		return fmt.Errorf("reseed restored guest: %w", err)
	}
	return nil
}
