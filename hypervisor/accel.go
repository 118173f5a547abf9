package hypervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/skiff-oci/skiff/agentclient/protocol"
	"github.com/skiff-oci/skiff/internal/logtail"
)

// ProbeConfig is the guest used to prove that KVM runs it.
type ProbeConfig struct {
	// Binary is the QEMU executable; empty means the architecture's QEMU
	// in PATH.
	Binary string
	// Kernel and Initrd are the real guest's: the probe must boot what
	// sandboxes will boot. The agent in Initrd answers protocol.ProbeCmdline.
	Kernel string
	Initrd string
	// Machine is the machine type; empty means the architecture's default.
	Machine string
	// Timeout bounds the probe boot; 0 means 2 s. A guest that works under
	// KVM reaches the agent in well under a second.
	Timeout time.Duration
}

// Host paths, variables so that tests can stand in for another host.
var (
	kvmDevice = "/dev/kvm"
	pvmModule = "/sys/module/kvm_pvm"
)

const (
	defaultProbeTimeout = 2 * time.Second
	cacheFile           = "accel.json"
	useTCG              = "; using TCG (software emulation, slower)"
)

// ResolveAccel turns the configured accelerator into kvm or tcg, with a
// sentence saying why (for `skiff check` and the logs). kvm and tcg are
// taken as asked (kvm fails if /dev/kvm cannot be opened read-write). auto
// picks KVM only once it has been proven to run the real guest: a
// /dev/kvm that opens is not enough (on a PVM host ordinary guests hang).
// The probe's verdict is cached in cacheDir (if not empty) until the QEMU
// binary, the kernel, the initrd or the PVM module changes.
func ResolveAccel(ctx context.Context, want Accel, probe ProbeConfig, cacheDir string) (Accel, string, error) {
	switch want {
	case AccelTCG:
		return AccelTCG, "TCG (software emulation) was requested", nil
	case AccelKVM:
		if err := openKVM(); err != nil {
			return "", "", fmt.Errorf("accel kvm: %w", err)
		}
		return AccelKVM, "KVM was requested and " + kvmDevice + " opens read-write", nil
	case AccelAuto, "":
	default:
		return "", "", fmt.Errorf("accel %q is unknown (want kvm, tcg or auto)", want)
	}

	if err := openKVM(); err != nil {
		return AccelTCG, err.Error() + useTCG, nil
	}
	if pvmLoaded() {
		return AccelTCG, kvmDevice + " is a PVM host (kernel module kvm_pvm is loaded), under which ordinary guest kernels hang" + useTCG, nil
	}
	if probe.Binary == "" {
		probe.Binary = DefaultBinary()
	}
	key, err := newCacheKey(probe)
	if err != nil {
		return "", "", fmt.Errorf("accel auto: %w", err)
	}
	if c, ok := readAccelCache(cacheDir, key); ok {
		return c.Accel, c.Reason + " (cached in " + filepath.Join(cacheDir, cacheFile) + ")", nil
	}
	works, reason, err := probeGuest(ctx, AccelKVM, probe)
	if err != nil {
		return "", "", fmt.Errorf("accel auto: %w", err)
	}
	accel := AccelKVM
	if !works {
		accel, reason = AccelTCG, reason+useTCG
	}
	// A cache that cannot be written only costs a probe next time.
	_ = writeAccelCache(cacheDir, accelCache{Key: key, Accel: accel, Reason: reason})
	return accel, reason, nil
}

func openKVM() error {
	f, err := os.OpenFile(kvmDevice, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("cannot open %s read-write (is KVM enabled, and may this user use it?): %w", kvmDevice, err)
	}
	return f.Close()
}

func pvmLoaded() bool {
	_, err := os.Stat(pvmModule)
	return err == nil
}

// probeGuest boots the probe guest under accel and reports whether the
// agent printed protocol.ProbeOK on the console in time, with a reason
// either way. An error means the probe could not be set up (bad config or
// ctx ended), which says nothing about the accelerator.
func probeGuest(ctx context.Context, accel Accel, p ProbeConfig) (bool, string, error) {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = defaultProbeTimeout
	}
	dir, err := os.MkdirTemp("", "skiff-probe-")
	if err != nil {
		return false, "", fmt.Errorf("probe: %w", err)
	}
	defer os.RemoveAll(dir)
	q, err := newQEMU(Config{
		Name:         "skiff-probe",
		Binary:       p.Binary,
		Kernel:       p.Kernel,
		Initrd:       p.Initrd,
		Machine:      p.Machine,
		KernelParams: []string{protocol.ProbeCmdline},
		Accel:        accel,
		VCPUs:        1,
		MemoryMiB:    256,
		AgentSocket:  filepath.Join(dir, "agent.sock"),
		QMPSocket:    filepath.Join(dir, "qmp.sock"),
		ConsoleLog:   filepath.Join(dir, "console.log"),
		StderrLog:    filepath.Join(dir, "qemu.log"),
		PIDFile:      filepath.Join(dir, "qemu.pid"),
	})
	if err != nil {
		return false, "", fmt.Errorf("probe: %w", err)
	}
	start := time.Now()
	if err := q.Start(ctx); err != nil {
		return false, "", fmt.Errorf("probe: %w", err)
	}
	defer q.kill()

	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	console := q.cfg.ConsoleLog
	for {
		if consoleHas(console, protocol.ProbeOK) {
			return true, fmt.Sprintf("KVM runs the guest: a probe VM reached its agent in %v", time.Since(start).Round(10*time.Millisecond)), nil
		}
		select {
		case <-ctx.Done():
			return false, "", fmt.Errorf("probe: %w", ctx.Err())
		case <-q.done:
			if consoleHas(console, protocol.ProbeOK) {
				continue
			}
			why := "exited"
			if q.err != nil {
				why = q.err.Error()
			}
			return false, fmt.Sprintf("a probe VM under %s did not print %s: %s", accel, protocol.ProbeOK, why), nil
		case <-deadline.C:
			return false, fmt.Sprintf("a probe VM under %s did not print %s within %v", accel, protocol.ProbeOK, timeout), nil
		case <-tick.C:
		}
	}
}

// consoleHas reports whether the guest console at path shows marker.
func consoleHas(path, marker string) bool { return logtail.Contains(path, marker) }

// kill SIGKILLs a VMM this process started and reaps it.
func (q *qemu) kill() {
	q.mu.Lock()
	cmd, done := q.cmd, q.done
	q.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = q.killStarted()
	<-done
}

// cacheKey names everything the probe's verdict depends on.
type cacheKey struct {
	Binary      string `json:"binary"`
	BinaryMtime int64  `json:"binaryMtime"`
	Kernel      string `json:"kernel"`
	KernelMtime int64  `json:"kernelMtime"`
	Initrd      string `json:"initrd"`
	InitrdMtime int64  `json:"initrdMtime"`
	PVM         bool   `json:"pvm"`
}

type accelCache struct {
	Key    cacheKey `json:"key"`
	Accel  Accel    `json:"accel"`
	Reason string   `json:"reason"`
}

func newCacheKey(p ProbeConfig) (cacheKey, error) {
	k := cacheKey{PVM: pvmLoaded()}
	var err error
	if k.Binary, k.BinaryMtime, err = stamp("qemu binary", p.Binary, true); err != nil {
		return k, err
	}
	if k.Kernel, k.KernelMtime, err = stamp("kernel", p.Kernel, false); err != nil {
		return k, err
	}
	if k.Initrd, k.InitrdMtime, err = stamp("initrd", p.Initrd, false); err != nil {
		return k, err
	}
	return k, nil
}

// stamp returns the absolute path of a file and its modification time.
// A bare binary name is looked up in PATH, as exec does.
func stamp(field, path string, lookPath bool) (string, int64, error) {
	if path == "" {
		return "", 0, fmt.Errorf("%s path is empty", field)
	}
	if lookPath && !strings.Contains(path, "/") {
		p, err := exec.LookPath(path)
		if err != nil {
			return "", 0, fmt.Errorf("%s: %w", field, err)
		}
		path = p
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", 0, fmt.Errorf("%s: %w", field, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", 0, fmt.Errorf("%s: %w", field, err)
	}
	return abs, fi.ModTime().UnixNano(), nil
}

func readAccelCache(dir string, key cacheKey) (accelCache, bool) {
	if dir == "" {
		return accelCache{}, false
	}
	b, err := os.ReadFile(filepath.Join(dir, cacheFile))
	if err != nil {
		return accelCache{}, false
	}
	var c accelCache
	if json.Unmarshal(b, &c) != nil || c.Key != key || (c.Accel != AccelKVM && c.Accel != AccelTCG) {
		return accelCache{}, false
	}
	return c, true
}

// writeAccelCache replaces the cache atomically, so that a concurrent
// reader sees the old verdict or the new one, never half a file.
func writeAccelCache(dir string, c accelCache) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("accel cache: %w", err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("accel cache: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+cacheFile+".*")
	if err != nil {
		return fmt.Errorf("accel cache: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, cacheFile))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("accel cache: %w", err)
	}
	return nil
}
