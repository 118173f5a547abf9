package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/skiff-oci/skiff/agentclient"
	"github.com/skiff-oci/skiff/config"
	"github.com/skiff-oci/skiff/hypervisor"
)

// pooledVM is a VM the shim took from the pool (pool.go), not adopted yet.
type pooledVM struct {
	m     member
	lock  *os.File // held while the sandbox lives
	pid   int
	agent *agentclient.Client
}

// pooledAnswerTimeout bounds the wait for a pooled VM's agent: it has
// answered before, so a VM that does not now is broken, and the sandbox
// restores a VM of its own instead.
const pooledAnswerTimeout = 3 * time.Second

// takePooled takes a VM from the pool for the sandbox whose VM would be c
// (without NICs yet), or returns nil: no pool, a sandbox the pool cannot
// serve, or no VM ready. It links the state directory to the member at
// once, so that teardown and delete find it whatever happens next.
func (s *shim) takePooled(c hypervisor.Config, spec *specs.Spec) *pooledVM {
	f := s.cfg.Factory
	if f.Cache <= 0 || !f.Template || !templateEligible(c) {
		return nil
	}
	if n, err := countNICs(spec, s.cfg.Runtime.NetworkModel); err != nil || n > templateNICs {
		return nil
	}
	key, err := templateKey(c)
	if err != nil {
		return nil
	}
	m, lock, pid := Factory{Dir: f.Dir}.Pool().take(key, s.d)
	if m == nil {
		// The pool ran dry (or its VMs died): fill it for the next one.
		s.log.Debug("no pooled VM ready")
		s.refillPool = true
		return nil
	}
	s.refillPool = true
	drop := func(err error) *pooledVM {
		s.log.Warn("cannot use pooled VM; restoring one", "member", m.Dir, "error", err)
		os.Remove(s.d.path(memberLink))
		m.remove()
		lock.Close()
		return nil
	}
	if err := os.Symlink(m.Dir, s.d.path(memberLink)); err != nil {
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
	s.log.Debug("agent answered")
	return &pooledVM{m: *m, lock: lock, pid: pid, agent: agent}
}

// bringTap moves the pooled VM's k-th spare tap into the current network
// namespace (the sandbox's: setupNetworkWith calls it there) as name.
func (p *pooledVM) bringTap(k int, name string) error {
	ns, err := netns.GetFromPath(p.m.netns())
	if err != nil {
		return fmt.Errorf("pooled VM's network namespace: %w", err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	spare := fmt.Sprintf("spare%d", k)
	l, err := h.LinkByName(spare)
	if err != nil {
		return fmt.Errorf("pooled VM's tap %s: %w", spare, err)
	}
	here, err := netns.Get()
	if err != nil {
		return err
	}
	defer here.Close()
	if err := h.LinkSetNsFd(l, int(here)); err != nil {
		return fmt.Errorf("move tap %s into the sandbox's namespace: %w", spare, err)
	}
	l, err = netlink.LinkByName(spare)
	if err == nil {
		err = netlink.LinkSetName(l, name)
	}
	if err != nil {
		return fmt.Errorf("rename tap %s to %s: %w", spare, name, err)
	}
	return nil
}

// adopt attaches the sandbox's shares to the pooled VM, links its files
// into the state directory and takes the VM over. plan's guest paths move
// to where the shares appear in the guest.
func (s *shim) adopt(p *pooledVM, c hypervisor.Config, plan *sharePlan) (hypervisor.Hypervisor, error) {
	for _, sh := range c.Shares {
		if err := bindShare(sh, p.m.content(sh.Tag)); err != nil {
			return nil, err
		}
	}
	plan.nest(poolContent)
	for name, target := range p.m.vmFiles() {
		if err := os.Symlink(target, s.d.path(name)); err != nil {
			return nil, fmt.Errorf("link pooled VM's %s: %w", name, err)
		}
	}
	c.NetDevices = nil // the VM has its NICs; their taps were brought
	vm, err := hypervisor.AdoptQEMU(p.m.vmConfig(c))
	if err != nil {
		return nil, err
	}
	// QEMU started in the filler's cgroups; the sandbox's are its now.
	if err := moveIntoHostCgroups(s.d, vm.PID()); err != nil {
		return nil, err
	}
	s.log.Debug("VM taken from the pool", "member", p.m.Dir, "pid", vm.PID())
	return vm, nil
}

// bindShare bind-mounts a share's host directory (and what is mounted
// below it, as the share itself would show) on target, read-only all the
// way down for a read-only share.
func bindShare(sh hypervisor.Share, target string) error {
	if err := os.Mkdir(target, 0o700); err != nil && !os.IsExist(err) {
		return err
	}
	if err := bindReadOnlyIf(sh.HostPath, target, sh.ReadOnly); err != nil {
		return fmt.Errorf("share with the pooled VM: %w", err)
	}
	return nil
}

// refill starts a filler in the background to replace the VM this shim
// took: this binary with the shim's global flags, `factory fill`, the
// configuration on its stdin. Nobody waits for it beyond reaping it.
func (s *shim) refill() {
	args := globalArgs(os.Args)
	r, w, err := os.Pipe()
	if err != nil {
		return
	}
	defer r.Close()
	b, _ := json.Marshal(s.cfg)
	w.Write(b) // a config is far below a pipe's buffer
	w.Close()
	cmd := exec.Command(args[0], append(args[1:], "factory", "fill", "--config-stdin")...)
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		s.log.Warn("cannot refill the pool", "error", err)
		return
	}
	go cmd.Wait()
}

// globalArgs is the shim's command line up to its verb: the binary and the
// global flags create gave it.
func globalArgs(argv []string) []string {
	for i, a := range argv {
		if a == "shim" {
			return append([]string{}, argv[:i]...)
		}
	}
	return argv[:1]
}

// ParseFillConfig reads the configuration a shim hands `factory fill`.
func ParseFillConfig(b []byte) (*config.Config, error) {
	cfg := config.Default()
	if err := json.Unmarshal(b, cfg); err != nil {
		return nil, fmt.Errorf("factory fill: configuration on stdin: %w", err)
	}
	return cfg, nil
}
