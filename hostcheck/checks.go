package hostcheck

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"

	"github.com/skiff-oci/skiff/internal/userns"

	"github.com/skiff-oci/skiff/hypervisor"
)

// qemuPackages name the Debian package that holds each architecture's QEMU.
var qemuPackages = map[string]string{
	"amd64":   "qemu-system-x86",
	"arm64":   "qemu-system-arm",
	"ppc64le": "qemu-system-ppc",
	"s390x":   "qemu-system-misc",
}

// defaultMachines mirror the machine types the hypervisor package boots
// when machine_type is empty (it does not export them).
var defaultMachines = map[string]string{
	"amd64":   "q35",
	"arm64":   "virt",
	"ppc64le": "pseries",
	"s390x":   "s390-ccw-virtio",
}

// DefaultMachine is the machine type used when the configuration names
// none.
func DefaultMachine() string { return defaultMachines[runtime.GOARCH] }

// tcgCost is what software emulation costs, said once for every message.
const tcgCost = "TCG costs: each VM boots in about 2 s instead of a fraction of a second, and guest code runs several times slower than under KVM. " + tcgSecurity

// tcgSecurity: QEMU's security policy covers only hardware virtualisation.
const tcgSecurity = "QEMU does not treat TCG as a security boundary (its security policy covers KVM guests only): for hostile workloads use KVM, and set hypervisor.accel = \"kvm\" to refuse starting without it"

// CheckQEMU finds the QEMU binary (path from the configuration; a bare
// name is looked up in PATH), reads its version and checks that it knows
// the machine type (empty: the architecture's default).
func CheckQEMU(ctx context.Context, path, machine string) Result {
	r := Result{Name: "qemu"}
	pkg := qemuPackages[runtime.GOARCH]
	if pkg == "" {
		pkg = "qemu-system"
	}
	bin, err := findQEMU(path)
	if err != nil {
		r.Status, r.Detail = Fail, err.Error()
		r.Fix = fmt.Sprintf("install QEMU (Debian: apt-get install %s) or set hypervisor.path in the configuration to its binary", pkg)
		return r
	}
	version, err := QEMUVersion(ctx, bin)
	if err != nil {
		r.Status, r.Detail = Fail, err.Error()
		r.Fix = fmt.Sprintf("reinstall QEMU (Debian: apt-get install --reinstall %s), or point hypervisor.path at a working binary", pkg)
		return r
	}
	if machine == "" {
		machine = DefaultMachine()
	}
	mtype, _, _ := strings.Cut(machine, ",")
	machines, err := qemuMachines(ctx, bin)
	if err != nil {
		r.Status, r.Detail = Fail, fmt.Sprintf("%s, QEMU %s: %v", bin, version, err)
		r.Fix = "point hypervisor.path at a working qemu-system binary"
		return r
	}
	if !machines[mtype] {
		r.Status = Fail
		r.Detail = fmt.Sprintf("%s, QEMU %s: machine type %q is not in `%s -machine help`", bin, version, mtype, bin)
		r.Fix = "set hypervisor.machine_type to one that `-machine help` lists (or leave it empty for the default), or install a QEMU that has it"
		return r
	}
	r.Status = Pass
	r.Detail = fmt.Sprintf("%s, QEMU %s, machine type %s supported", bin, version, mtype)
	return r
}

func findQEMU(path string) (string, error) {
	if path == "" {
		path = hypervisor.DefaultBinary()
		if path == "" {
			return "", fmt.Errorf("no QEMU binary is known for architecture %s", runtime.GOARCH)
		}
	}
	if !strings.Contains(path, "/") {
		p, err := lookPath(path)
		if err != nil {
			return "", fmt.Errorf("%s not found in PATH", path)
		}
		return p, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, unwrapPath(err))
	}
	if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s is not an executable file", path)
	}
	return path, nil
}

var qemuVersionRE = regexp.MustCompile(`version\s+(\S+)`)

// QEMUVersion runs `bin -version` and returns the version it names.
func QEMUVersion(ctx context.Context, bin string) (string, error) {
	out, err := runQuiet(ctx, bin, "-version")
	if err != nil {
		return "", fmt.Errorf("%s -version: %w", bin, err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	m := qemuVersionRE.FindStringSubmatch(line)
	if m == nil {
		return "", fmt.Errorf("%s -version printed no version: %q", bin, strings.TrimSpace(line))
	}
	return m[1], nil
}

// qemuMachines lists the machine types of `bin -machine help` (aliases
// included: q35 is one).
func qemuMachines(ctx context.Context, bin string) (map[string]bool, error) {
	out, err := runQuiet(ctx, bin, "-machine", "help")
	if err != nil {
		return nil, fmt.Errorf("%s -machine help: %w", bin, err)
	}
	ms := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 && !strings.HasSuffix(f[0], ":") {
			ms[f[0]] = true
		}
	}
	return ms, nil
}

// runQuiet runs a short helper command, bounded by commandTimeout, and
// returns its stdout; stderr is quoted in the error.
func runQuiet(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("did not finish within %v", commandTimeout)
	}
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, fmt.Errorf("%w: %s", err, msg)
		}
		return nil, err
	}
	return out, nil
}

// CheckAccel resolves the configured accelerator as a sandbox would
// (hypervisor.ResolveAccel, whose verdict is cached in cacheDir) and says
// what it chose and why. A TCG fallback is a warning: it works, slowly.
func CheckAccel(ctx context.Context, want string, probe hypervisor.ProbeConfig, cacheDir string) Result {
	r := Result{Name: "accelerator"}
	if want == "" {
		want = string(hypervisor.AccelAuto)
	}
	got, why, err := resolveAccel(ctx, hypervisor.Accel(want), probe, cacheDir)
	switch {
	case err != nil:
		r.Status, r.Detail = Fail, fmt.Sprintf("accel = %q: %v", want, err)
		if want == string(hypervisor.AccelKVM) {
			r.Fix = "make /dev/kvm usable (load kvm_intel or kvm_amd; run as a user who may open it) or set hypervisor.accel = \"auto\" or \"tcg\""
		} else {
			r.Fix = "fix the QEMU binary and guest image reported here, so that a probe VM can boot"
		}
	case got == hypervisor.AccelKVM:
		r.Status, r.Detail = Pass, "KVM: "+why
	case want == string(hypervisor.AccelTCG):
		r.Status, r.Detail = Pass, "TCG: "+why+". "+tcgCost
	default:
		r.Status = Warn
		r.Detail = fmt.Sprintf("TCG chosen (accel = %q): %s. %s", want, why, tcgCost)
		if strings.Contains(why, "PVM") {
			r.Fix = "nothing to do for TCG; for KVM speed run on a host whose KVM runs ordinary guests (bare metal, or nested virtualisation): a PVM host only runs guest kernels built for PVM"
		} else {
			r.Fix = "nothing to do for TCG; for KVM speed enable virtualisation (VT-x/AMD-V, or nested virtualisation in a VM), load kvm_intel or kvm_amd, and make /dev/kvm readable and writable"
		}
	}
	return r
}

// CheckVsock reports whether the host can give guests a virtio-vsock
// device; without it the agent channel is a virtio-serial port.
func CheckVsock() Result {
	r := Result{Name: "vhost-vsock"}
	fi, err := os.Stat(vhostVsock)
	if err == nil && fi.Mode()&fs.ModeCharDevice != 0 {
		r.Status, r.Detail = Pass, vhostVsock+" present"
		return r
	}
	r.Status = Warn
	r.Detail = vhostVsock + " is missing: the agent channel uses virtio-serial, which works everywhere"
	r.Fix = "to allow virtio-vsock: modprobe vhost_vsock (not needed to run containers)"
	return r
}

// CheckConfinement says whether VMs run jailed (hypervisor.Confined): QEMU
// under a uid of its own without capabilities, files served out of
// process under skiff's seccomp filter.
func CheckConfinement() Result {
	r := Result{Name: "confinement"}
	helper := hypervisor.ProxyHelper()
	switch {
	case hypervisor.Confined():
		r.Status = Pass
		r.Detail = "QEMU runs jailed (a uid of its own per VM, no capabilities, no_new_privs, seccomp, a mount namespace without the host's files); the guest's files are served by " + helper + ", chrooted into each share, under a seccomp filter that refuses set-ID bits and device nodes"
	case os.Geteuid() != 0:
		r.Status = Warn
		r.Detail = "not root: QEMU runs as this user and serves the guest's files itself (it can write what this user can, in the shares)"
		r.Fix = "run skiff as root for the jail"
	case !hypervisor.InitialUserNS():
		r.Status = Warn
		r.Detail = "in a user namespace (rootless podman's?): QEMU runs as this user and serves the guest's files itself"
	case helper == "":
		r.Status = Warn
		r.Detail = "no virtfs-proxy-helper found: QEMU runs as root and serves the guest's files itself, unjailed"
		r.Fix = "install QEMU's virtfs-proxy-helper (Debian 12: qemu-system-common ships /usr/lib/qemu/virtfs-proxy-helper)"
	default:
		r.Status = Warn
		r.Detail = "skiff has no seccomp filter for this architecture's file servers: QEMU runs as root and serves the guest's files itself, unjailed"
	}
	return r
}

// virtioFS is hypervisor.VirtioFS (a variable for tests).
var virtioFS = hypervisor.VirtioFS

// CheckSharedFS says how sandboxes' files reach their guests under
// runtime.shared_fs (setting), and why.
func CheckSharedFS(setting string) Result {
	r := Result{Name: "shared filesystem"}
	why := virtioFS()
	switch {
	case setting == "9p":
		r.Status = Pass
		r.Detail = "9p for every sandbox (runtime.shared_fs = \"9p\")"
	case setting == "virtio-fs" && why == nil:
		r.Status = Pass
		r.Detail = "virtio-fs (" + hypervisor.Virtiofsd() + ") for every sandbox, each booted cold: no VM template or pool, whose clones cannot share over virtio-fs"
	case setting == "virtio-fs":
		r.Status = Fail
		r.Detail = "runtime.shared_fs = \"virtio-fs\", but " + why.Error() + ": every sandbox would fail to start"
		r.Fix = "set runtime.shared_fs = \"auto\" or \"9p\", or install virtiofsd and run skiff as root"
	case why == nil:
		r.Status = Pass
		r.Detail = "auto: a template's clones and pooled VMs over 9p (they cannot have virtio-fs), VMs that boot cold over virtio-fs (" + hypervisor.Virtiofsd() + ")"
	case hypervisor.Confined():
		r.Status = Warn
		r.Detail = "auto: 9p for every sandbox, as " + why.Error() + " (over virtio-fs, metadata work of VMs that boot cold is several times faster)"
		r.Fix = "install virtiofsd (Debian 12: qemu-system-common ships /usr/lib/qemu/virtiofsd); not needed to run containers"
	default:
		r.Status = Pass
		r.Detail = "auto: 9p for every sandbox, as " + why.Error()
	}
	return r
}

// Cgroups describes the host's cgroup set-up.
type Cgroups struct {
	// Mode is "v2" (unified), "hybrid" (v1 controllers plus a v2
	// hierarchy), "v1", or "none".
	Mode string `json:"mode" toml:"mode"`
	// Init is the command name of PID 1; Systemd is whether that is
	// systemd.
	Init    string `json:"init" toml:"init"`
	Systemd bool   `json:"systemd" toml:"systemd"`
}

// ReadCgroups reads the cgroup mode from the mount table (cgroup and
// cgroup2 mounts at or below /sys/fs/cgroup) and PID 1's name.
func ReadCgroups() (Cgroups, error) {
	var cg Cgroups
	data, err := os.ReadFile(mountInfo)
	if err != nil {
		return cg, fmt.Errorf("read mount table: %w", err)
	}
	const base = "/sys/fs/cgroup"
	var v1, v2, v2AtBase bool
	for _, line := range strings.Split(string(data), "\n") {
		// Fields: id parent major:minor root mountpoint options... - fstype source superoptions
		pre, post, ok := strings.Cut(line, " - ")
		f, pf := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(pf) < 1 {
			continue
		}
		mp := f[4]
		if mp != base && !strings.HasPrefix(mp, base+"/") {
			continue
		}
		switch pf[0] {
		case "cgroup":
			v1 = true
		case "cgroup2":
			v2 = true
			v2AtBase = v2AtBase || mp == base
		}
	}
	switch {
	case v2AtBase && !v1:
		cg.Mode = "v2"
	case v1 && v2:
		cg.Mode = "hybrid"
	case v1:
		cg.Mode = "v1"
	case v2:
		// A cgroup2 mount below /sys/fs/cgroup only: unusual, but unified.
		cg.Mode = "v2"
	default:
		cg.Mode = "none"
	}
	if b, err := os.ReadFile(pid1Comm); err == nil {
		cg.Init = strings.TrimSpace(string(b))
		cg.Systemd = cg.Init == "systemd"
	}
	return cg, nil
}

// CheckCgroups reports the cgroup mode and whether systemd is PID 1.
func CheckCgroups() Result {
	r := Result{Name: "cgroups"}
	cg, err := ReadCgroups()
	if err != nil {
		r.Status, r.Detail = Warn, err.Error()
		r.Fix = "mount /proc"
		return r
	}
	init := "PID 1 is " + cg.Init
	switch {
	case cg.Init == "":
		init = "PID 1 unknown"
	case cg.Systemd:
		init = "PID 1 is systemd"
	default:
		init += ", not systemd"
	}
	desc := map[string]string{
		"v2":     "v2 (unified)",
		"hybrid": "hybrid (v1 controllers and a v2 hierarchy)",
		"v1":     "v1 (legacy)",
	}[cg.Mode]
	if desc == "" {
		r.Status = Warn
		r.Detail = "no cgroup filesystem mounted at /sys/fs/cgroup; " + init
		r.Fix = "mount cgroup2 at /sys/fs/cgroup (mount -t cgroup2 none /sys/fs/cgroup), as systemd does at boot"
		return r
	}
	r.Status, r.Detail = Pass, desc+"; "+init
	if userns.Rootless() {
		r.Status = Warn
		r.Detail += "; rootless: a sandbox gets no host cgroup of its own, so the spec's limits bind inside the guest only (the VM's size still caps it)"
		r.Fix = "delegate a cgroup v2 subtree to this user (systemd: user@.service Delegate=yes) for host limits"
	}
	return r
}

// CheckStateRoot proves that the state root is writable by creating and
// removing a file in it. A root that does not exist yet is fine if skiff
// can create it: the check then writes in the nearest existing parent.
func CheckStateRoot(root string) Result {
	r := Result{Name: "state root"}
	fix := "make " + root + " a writable directory (run as root, or pass --root with a directory you own)"
	if root == "" {
		r.Status, r.Detail, r.Fix = Fail, "no state root (--root is empty)", "pass --root DIR"
		return r
	}
	dir, missing := root, false
	for {
		fi, err := os.Stat(dir)
		if err == nil {
			if !fi.IsDir() {
				r.Status, r.Detail, r.Fix = Fail, dir+" is not a directory", fix
				return r
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			r.Status, r.Detail, r.Fix = Fail, err.Error(), fix
			return r
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			r.Status, r.Detail, r.Fix = Fail, root+": no existing parent directory", fix
			return r
		}
		dir, missing = parent, true
	}
	f, err := os.CreateTemp(dir, ".skiff-check-*")
	if err != nil {
		r.Status, r.Detail, r.Fix = Fail, fmt.Sprintf("cannot write in %s: %v", dir, unwrapPath(err)), fix
		return r
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		r.Status, r.Detail, r.Fix = Fail, fmt.Sprintf("cannot remove %s: %v", name, unwrapPath(err)), fix
		return r
	}
	r.Status = Pass
	if missing {
		r.Detail = fmt.Sprintf("%s does not exist yet; skiff can create it (%s is writable)", root, dir)
	} else {
		r.Detail = root + " is writable"
	}
	return r
}

// CheckNetwork looks for what container networking needs on the host:
// /dev/net/tun for taps, ip for links and tc for redirecting traffic
// between a tap and the container's interface.
func CheckNetwork() Result {
	r := Result{Name: "networking"}
	var have, lack []string
	if fi, err := os.Stat(devTun); err != nil || fi.Mode()&fs.ModeCharDevice == 0 {
		lack = append(lack, devTun+" missing")
	} else if f, err := os.OpenFile(devTun, os.O_RDWR, 0); err != nil {
		// A rootless user on a host whose /dev/net/tun is root's (0600).
		lack = append(lack, fmt.Sprintf("%s present but this user cannot open it (%v)", devTun, unwrapPath(err)))
	} else {
		f.Close()
		have = append(have, devTun+" present")
	}
	for _, tool := range []string{"ip", "tc"} {
		if p, ok := findTool(tool); ok {
			have = append(have, tool+" at "+p)
		} else {
			lack = append(lack, tool+" not found")
		}
	}
	if len(lack) == 0 {
		r.Status, r.Detail = Pass, strings.Join(have, ", ")
		return r
	}
	r.Status = Warn
	r.Detail = strings.Join(append(lack, have...), ", ") + ": networked containers (taps, tc) will not work"
	r.Fix = "modprobe tun (for /dev/net/tun) and install iproute2 (ip and tc)"
	if strings.Contains(r.Detail, "cannot open") {
		r.Fix = "rootless networking needs /dev/net/tun usable by this user (most distributions ship it mode 0666); without it, use --network none"
	}
	return r
}

// findTool looks a system tool up in PATH, then in the sbin directories a
// non-root PATH often lacks.
func findTool(name string) (string, bool) {
	if p, err := lookPath(name); err == nil {
		return p, true
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

// unwrapPath drops the operation and path of a *fs.PathError, for messages
// that name the path already.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// CheckScratch looks for mkfs.ext4, which makes a sandbox's scratch disk
// (the build directories of a privileged container, the paths of the
// annotation io.skiff.scratch, emptyDir volumes): without it such a
// container cannot be created; others run.
func CheckScratch() Result {
	r := Result{Name: "scratch disk"}
	if p, ok := findTool("mkfs.ext4"); ok {
		r.Status, r.Detail = Pass, "mkfs.ext4 at "+p+": scratch mounts live on an ext4 disk in the guest"
		return r
	}
	r.Status = Warn
	r.Detail = "mkfs.ext4 not found: a container with scratch mounts (a privileged one, io.skiff.scratch, an emptyDir) cannot be created"
	r.Fix = "apt-get install e2fsprogs (scripts/install-deps.sh does)"
	return r
}
