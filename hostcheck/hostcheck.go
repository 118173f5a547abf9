// Package hostcheck inspects the host for what skiff needs (QEMU, an
// accelerator, the guest image, cgroups, a writable state root, ...) and
// describes the configuration in force, for `skiff check` and `skiff env`.
// Each check is a small function of explicit inputs, so that tests can
// stand in for another host; the host paths it reads are variables.
//
// It must not change the host: the only writes are a temporary file in the
// state root (removed at once) and the accelerator cache that
// hypervisor.ResolveAccel keeps there.
package hostcheck

import (
	"context"
	"os/exec"
	"time"

	"github.com/skiff-oci/skiff/config"
	"github.com/skiff-oci/skiff/hypervisor"
)

// Statuses of a Result.
const (
	Pass = "pass"
	Warn = "warn"
	Fail = "fail"
)

// Result is the verdict on one host requirement. Fix says in words what to
// do about a warning or a failure; it is empty when the check passed.
type Result struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Host paths and look-ups, variables so that tests can stand in for
// another host.
var (
	mountInfo    = "/proc/self/mountinfo"
	pid1Comm     = "/proc/1/comm"
	vhostVsock   = "/dev/vhost-vsock"
	devTun       = "/dev/net/tun"
	osRelease    = "/proc/sys/kernel/osrelease"
	lookPath     = exec.LookPath
	resolveAccel = hypervisor.ResolveAccel
)

// commandTimeout bounds each helper command (qemu -version, -machine
// help): check must finish even with a hung QEMU, but a loaded host (a
// node starting VMs) can take several seconds to start one.
const commandTimeout = 15 * time.Second

// Options are what the checks need to know beyond the host itself.
type Options struct {
	// Config is the configuration in force; nil when it failed to load
	// (ConfigErr says why), in which case only the checks that do not
	// depend on it run.
	Config    *config.Config
	ConfigErr error
	// Root is the state root (--root).
	Root string
}

// Run performs every check, in the order a user should fix them.
func Run(ctx context.Context, o Options) []Result {
	var rs []Result
	if o.Config == nil {
		rs = append(rs, Result{
			Name: "config", Status: Fail,
			Detail: errString(o.ConfigErr),
			Fix:    "correct the configuration file (every option is documented in config.toml.example), or pass --config with a valid one",
		})
	} else {
		rs = append(rs, CheckConfig(o.Config))
		h := o.Config.Hypervisor
		rs = append(rs, CheckQEMU(ctx, h.Path, h.MachineType))
	}
	// The state root comes before the accelerator, whose probe may cache
	// its verdict there.
	rs = append(rs, CheckStateRoot(o.Root))
	if o.Config != nil {
		h := o.Config.Hypervisor
		rs = append(rs, CheckAccel(ctx, h.Accel, hypervisor.ProbeConfig{
			Binary: h.Path, Kernel: h.Kernel, Initrd: h.Initrd, Machine: h.MachineType,
		}, o.Root))
		rs = append(rs, CheckKernel(h.Kernel), CheckInitrd(h.Initrd), CheckGuestImage(h.Kernel, h.Initrd))
	}
	sharedFS := "auto"
	if o.Config != nil {
		sharedFS = o.Config.Runtime.SharedFS
	}
	rs = append(rs,
		CheckVsock(),
		CheckConfinement(),
		CheckSharedFS(sharedFS),
		CheckCgroups(),
		CheckNetwork(),
		CheckScratch(),
	)
	return rs
}

// Failed reports whether any result failed, or (strict) warned.
func Failed(rs []Result, strict bool) bool {
	for _, r := range rs {
		if r.Status == Fail || (strict && r.Status == Warn) {
			return true
		}
	}
	return false
}

// CheckConfig says where the configuration came from.
func CheckConfig(c *config.Config) Result {
	if c.Source == "" {
		return Result{Name: "config", Status: Pass, Detail: "built-in defaults (no " + config.DefaultPath + ")"}
	}
	return Result{Name: "config", Status: Pass, Detail: "file " + c.Source}
}

func errString(err error) string {
	if err == nil {
		return "unknown error"
	}
	return err.Error()
}
