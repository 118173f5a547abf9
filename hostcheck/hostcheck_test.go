package hostcheck

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/skiff-oci/skiff/config"
	"github.com/skiff-oci/skiff/hypervisor"
)

// set replaces a package variable for the length of a test.
func set[T any](t *testing.T, v *T, val T) {
	t.Helper()
	old := *v
	*v = val
	t.Cleanup(func() { *v = old })
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func wantResult(t *testing.T, r Result, status string, detailHas ...string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("%s: status %s, want %s (detail %q)", r.Name, r.Status, status, r.Detail)
	}
	for _, s := range detailHas {
		if !strings.Contains(r.Detail, s) {
			t.Errorf("%s: detail %q does not contain %q", r.Name, r.Detail, s)
		}
	}
	if r.Status != Pass && r.Fix == "" {
		t.Errorf("%s: %s without a fix", r.Name, r.Status)
	}
	if r.Status == Pass && r.Fix != "" {
		t.Errorf("%s: passed with a fix %q", r.Name, r.Fix)
	}
}

func noLookPath(string) (string, error) { return "", exec.ErrNotFound }

// fakeQEMU writes a shell script answering -version and -machine help.
func fakeQEMU(t *testing.T, version, machines string) string {
	t.Helper()
	script := fmt.Sprintf(`#!/bin/sh
case "$1" in
-version) cat <<'END'
%s
Copyright (c) the authors
END
;;
-machine) cat <<'END'
Supported machines are:
%s
END
;;
*) exit 1 ;;
esac
`, version, machines)
	return writeFile(t, filepath.Join(t.TempDir(), "qemu-system-test"), script, 0o755)
}

func TestCheckQEMU(t *testing.T) {
	ctx := context.Background()
	machines := "microvm              microvm (i386)\nq35                  Standard PC (alias of pc-q35-7.2)\nvirt                 QEMU virt\npseries              pSeries\ns390-ccw-virtio      s390"
	good := fakeQEMU(t, "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7)", machines)

	wantResult(t, CheckQEMU(ctx, good, ""), Pass, good, "7.2.22", DefaultMachine())
	wantResult(t, CheckQEMU(ctx, good, "microvm,acpi=off"), Pass, "microvm")
	wantResult(t, CheckQEMU(ctx, good, "isapc"), Fail, `"isapc"`, "-machine help")

	missing := filepath.Join(t.TempDir(), "no-qemu")
	wantResult(t, CheckQEMU(ctx, missing, ""), Fail, missing, "no such file")

	notExec := writeFile(t, filepath.Join(t.TempDir(), "qemu"), "", 0o644)
	wantResult(t, CheckQEMU(ctx, notExec, ""), Fail, "not an executable")

	set(t, &lookPath, noLookPath)
	wantResult(t, CheckQEMU(ctx, "qemu-system-none", ""), Fail, "qemu-system-none not found in PATH")

	garbled := fakeQEMU(t, "something else", machines)
	wantResult(t, CheckQEMU(ctx, garbled, ""), Fail, "printed no version")

	broken := writeFile(t, filepath.Join(t.TempDir(), "qemu"), "#!/bin/sh\necho 'cannot load libfoo' >&2\nexit 1\n", 0o755)
	wantResult(t, CheckQEMU(ctx, broken, ""), Fail, "cannot load libfoo")
}

func TestCheckAccel(t *testing.T) {
	ctx := context.Background()
	fake := func(a hypervisor.Accel, why string, err error) func(context.Context, hypervisor.Accel, hypervisor.ProbeConfig, string) (hypervisor.Accel, string, error) {
		return func(context.Context, hypervisor.Accel, hypervisor.ProbeConfig, string) (hypervisor.Accel, string, error) {
			return a, why, err
		}
	}
	probe := hypervisor.ProbeConfig{}

	set(t, &resolveAccel, fake(hypervisor.AccelTCG, "/dev/kvm is a PVM host (kernel module kvm_pvm is loaded); using TCG", nil))
	r := CheckAccel(ctx, "auto", probe, "")
	wantResult(t, r, Warn, "TCG", "PVM", "TCG costs")
	if !strings.Contains(r.Fix, "PVM") {
		t.Errorf("fix for a PVM host does not explain PVM: %q", r.Fix)
	}

	set(t, &resolveAccel, fake(hypervisor.AccelTCG, "cannot open /dev/kvm; using TCG", nil))
	r = CheckAccel(ctx, "", probe, "")
	wantResult(t, r, Warn, "TCG", `accel = "auto"`)
	if !strings.Contains(r.Fix, "kvm_intel") {
		t.Errorf("fix without KVM does not say how to get it: %q", r.Fix)
	}

	set(t, &resolveAccel, fake(hypervisor.AccelTCG, "TCG (software emulation) was requested", nil))
	wantResult(t, CheckAccel(ctx, "tcg", probe, ""), Pass, "requested", "TCG costs")

	set(t, &resolveAccel, fake(hypervisor.AccelKVM, "KVM runs the guest: a probe VM reached its agent in 300ms", nil))
	wantResult(t, CheckAccel(ctx, "auto", probe, ""), Pass, "KVM", "probe")

	set(t, &resolveAccel, fake("", "", errors.New("accel kvm: cannot open /dev/kvm")))
	r = CheckAccel(ctx, "kvm", probe, "")
	wantResult(t, r, Fail, "/dev/kvm")
	if !strings.Contains(r.Fix, `"tcg"`) {
		t.Errorf("fix for kvm does not offer tcg: %q", r.Fix)
	}
}

// TestCheckAccelReal runs the real resolution with tcg requested, which
// must never touch /dev/kvm or boot anything.
func TestCheckAccelReal(t *testing.T) {
	wantResult(t, CheckAccel(context.Background(), "tcg", hypervisor.ProbeConfig{}, t.TempDir()), Pass, "TCG")
	wantResult(t, CheckAccel(context.Background(), "xen", hypervisor.ProbeConfig{}, t.TempDir()), Fail, "xen")
}

func TestCheckVsock(t *testing.T) {
	set(t, &vhostVsock, "/dev/null") // any character device
	wantResult(t, CheckVsock(), Pass, "/dev/null")
	missing := filepath.Join(t.TempDir(), "vhost-vsock")
	set(t, &vhostVsock, missing)
	wantResult(t, CheckVsock(), Warn, missing, "virtio-serial")
}

func TestCheckSharedFS(t *testing.T) {
	missing := errors.New("no virtiofsd in PATH")
	set(t, &virtioFS, func() error { return missing })
	wantResult(t, CheckSharedFS("9p"), Pass, "9p for every sandbox")
	wantResult(t, CheckSharedFS("virtio-fs"), Fail, "no virtiofsd", "would fail")
	if hypervisor.Confined() {
		wantResult(t, CheckSharedFS("auto"), Warn, "9p for every sandbox", "no virtiofsd")
	} else {
		wantResult(t, CheckSharedFS("auto"), Pass, "9p for every sandbox", "no virtiofsd")
	}

	set(t, &virtioFS, func() error { return nil })
	wantResult(t, CheckSharedFS("auto"), Pass, "clones and pooled VMs over 9p", "cold over virtio-fs")
	wantResult(t, CheckSharedFS("virtio-fs"), Pass, "virtio-fs", "booted cold")
}

const (
	mountsV2 = `25 30 0:23 / /sys rw - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
`
	mountsHybrid = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	mountsV1 = `31 23 0:28 / /sys/fs/cgroup rw shared:9 - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/memory rw shared:10 - cgroup cgroup rw,memory
`
	// A cgroup2 mount elsewhere does not make the host v2.
	mountsNone = `26 25 0:24 / /mnt/cg rw - cgroup2 cgroup2 rw
`
)

func TestCgroups(t *testing.T) {
	dir := t.TempDir()
	comm := writeFile(t, filepath.Join(dir, "comm"), "systemd\n", 0o644)
	set(t, &pid1Comm, comm)
	for _, tc := range []struct {
		name, mounts, mode, status, detail string
	}{
		{"v2", mountsV2, "v2", Pass, "v2 (unified)"},
		{"hybrid", mountsHybrid, "hybrid", Pass, "hybrid"},
		{"v1", mountsV1, "v1", Pass, "v1"},
		{"none", mountsNone, "none", Warn, "no cgroup filesystem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set(t, &mountInfo, writeFile(t, filepath.Join(t.TempDir(), "mountinfo"), tc.mounts, 0o644))
			cg, err := ReadCgroups()
			if err != nil {
				t.Fatal(err)
			}
			if cg.Mode != tc.mode || !cg.Systemd || cg.Init != "systemd" {
				t.Errorf("ReadCgroups = %+v, want mode %s under systemd", cg, tc.mode)
			}
			wantResult(t, CheckCgroups(), tc.status, tc.detail, "PID 1 is systemd")
		})
	}

	writeFile(t, comm, "tini\n", 0o644)
	set(t, &mountInfo, writeFile(t, filepath.Join(dir, "mountinfo"), mountsV2, 0o644))
	wantResult(t, CheckCgroups(), Pass, "PID 1 is tini, not systemd")

	set(t, &mountInfo, filepath.Join(dir, "missing"))
	if _, err := ReadCgroups(); err == nil {
		t.Error("ReadCgroups without a mount table: no error")
	}
}

func TestCheckStateRoot(t *testing.T) {
	root := t.TempDir()
	wantResult(t, CheckStateRoot(root), Pass, root+" is writable")
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("check left %d entries in the state root", len(ents))
	}

	notYet := filepath.Join(root, "a", "b")
	wantResult(t, CheckStateRoot(notYet), Pass, "does not exist yet", root+" is writable")
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("check of a missing root created %d entries in its parent", len(ents))
	}

	file := writeFile(t, filepath.Join(root, "file"), "", 0o644)
	wantResult(t, CheckStateRoot(file), Fail, file+" is not a directory")
	wantResult(t, CheckStateRoot(filepath.Join(file, "sub")), Fail, "not a directory")
	wantResult(t, CheckStateRoot(""), Fail, "--root")

	if os.Geteuid() != 0 {
		ro := filepath.Join(root, "ro")
		if err := os.Mkdir(ro, 0o555); err != nil {
			t.Fatal(err)
		}
		wantResult(t, CheckStateRoot(ro), Fail, "cannot write in "+ro)
	}
}

func TestCheckNetwork(t *testing.T) {
	set(t, &lookPath, func(name string) (string, error) { return "/opt/bin/" + name, nil })
	set(t, &devTun, "/dev/null")
	wantResult(t, CheckNetwork(), Pass, "/dev/null present", "ip at /opt/bin/ip", "tc at /opt/bin/tc")

	missing := filepath.Join(t.TempDir(), "tun")
	set(t, &devTun, missing)
	r := CheckNetwork()
	wantResult(t, r, Warn, missing+" missing")
	if !strings.Contains(r.Fix, "tun") {
		t.Errorf("fix does not mention tun: %q", r.Fix)
	}
}

func TestCheckScratch(t *testing.T) {
	set(t, &lookPath, func(name string) (string, error) { return "/opt/bin/" + name, nil })
	wantResult(t, CheckScratch(), Pass, "mkfs.ext4 at /opt/bin/mkfs.ext4")
}

func TestFailed(t *testing.T) {
	pass := []Result{{Status: Pass}, {Status: Pass}}
	warn := append(pass, Result{Status: Warn})
	fail := append(warn, Result{Status: Fail})
	if Failed(pass, true) || Failed(warn, false) || !Failed(warn, true) || !Failed(fail, false) {
		t.Error("Failed: wrong verdict")
	}
}

// makeELF writes an x86-64 ELF with one PT_NOTE segment holding a note of
// owner "Xen" and the given type.
func makeELF(t *testing.T, path string, noteType uint32) string {
	t.Helper()
	var note bytes.Buffer
	binary.Write(&note, binary.LittleEndian, []uint32{4, 4, noteType})
	note.WriteString("Xen\x00")
	binary.Write(&note, binary.LittleEndian, uint32(0x1000000))
	const hdrSize, phSize = 64, 56
	h := elf.Header64{
		Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: 1,
		Phoff: hdrSize, Ehsize: hdrSize, Phentsize: phSize, Phnum: 1,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	p := elf.Prog64{
		Type: uint32(elf.PT_NOTE), Flags: uint32(elf.PF_R), Off: hdrSize + phSize,
		Filesz: uint64(note.Len()), Memsz: uint64(note.Len()), Align: 4,
	}
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, h)
	binary.Write(&b, binary.LittleEndian, p)
	b.Write(note.Bytes())
	return writeFile(t, path, b.String(), 0o644)
}

func TestCheckKernel(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nonexistent", "vmlinux")
	wantResult(t, CheckKernel(missing), Fail, missing)
	wantResult(t, CheckKernel(""), Fail, "no kernel path")
	wantResult(t, CheckKernel(dir), Fail, dir+" is not a regular file")
	if runtime.GOARCH != "amd64" {
		t.Skip("the PVH checks are for amd64")
	}

	pvh := makeELF(t, filepath.Join(dir, "pvh"), xenPhys32Entry)
	wantResult(t, CheckKernel(pvh), Pass, pvh, "PVH")

	noPVH := makeELF(t, filepath.Join(dir, "nopvh"), 5)
	wantResult(t, CheckKernel(noPVH), Fail, noPVH, "no PVH entry point")

	bz := make([]byte, 0x300)
	copy(bz, "MZ")
	copy(bz[0x202:], "HdrS")
	bzImage := writeFile(t, filepath.Join(dir, "bzImage"), string(bz), 0o644)
	wantResult(t, CheckKernel(bzImage), Fail, "bzImage")

	text := writeFile(t, filepath.Join(dir, "text"), "hello, world", 0o644)
	wantResult(t, CheckKernel(text), Fail, "not an ELF")

	// The image make guest builds, when this checkout has one.
	if _, err := os.Stat("../build/guest/vmlinux"); err == nil {
		wantResult(t, CheckKernel("../build/guest/vmlinux"), Pass, "PVH")
	}
}

// cpioEntry is one member of a test archive.
type cpioEntry struct {
	name string
	mode uint32
	data string
}

// makeCpio writes a newc archive as the kernel's initramfs unpacker reads it.
func makeCpio(entries ...cpioEntry) []byte {
	var b bytes.Buffer
	pad := func() {
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	entries = append(entries, cpioEntry{name: "TRAILER!!!"})
	for i, e := range entries {
		fmt.Fprintf(&b, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
			i+1, e.mode, 0, 0, 1, 0, len(e.data), 0, 0, 0, 0, len(e.name)+1, 0)
		b.WriteString(e.name + "\x00")
		pad()
		b.WriteString(e.data)
		pad()
	}
	return b.Bytes()
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestCpioFileSHA256(t *testing.T) {
	agent := "the agent binary, 37 bytes long.....\n"
	first := makeCpio(
		cpioEntry{".", 0o40755, ""},
		cpioEntry{"lib/modules/x.ko", 0o100644, "module"},
	)
	second := makeCpio(
		cpioEntry{"init", 0o120777, "busybox"}, // a symlink named init is not the agent
		cpioEntry{"./init", 0o100755, agent},
	)
	archive := append(append(first, make([]byte, 512)...), second...)
	path := writeFile(t, filepath.Join(t.TempDir(), "initramfs.img"), string(archive), 0o644)
	got, err := initSHA256(path)
	if err != nil || got != sum(agent) {
		t.Errorf("initSHA256 = %q, %v; want %s", got, err, sum(agent))
	}

	noInit := writeFile(t, filepath.Join(t.TempDir(), "i"), string(first), 0o644)
	if _, err := initSHA256(noInit); err == nil || !strings.Contains(err.Error(), "no /init") {
		t.Errorf("archive without init: err = %v", err)
	}
	gz := writeFile(t, filepath.Join(t.TempDir(), "i"), "\x1f\x8b\x08\x00 compressed", 0o644)
	if _, err := initSHA256(gz); err == nil || !strings.Contains(err.Error(), "not an uncompressed") {
		t.Errorf("gzip archive: err = %v", err)
	}
	truncated := writeFile(t, filepath.Join(t.TempDir(), "i"), string(second[:150]), 0o644)
	if _, err := initSHA256(truncated); err == nil {
		t.Error("truncated archive: no error")
	}
}

func TestCheckInitrd(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.img")
	wantResult(t, CheckInitrd(missing), Fail, missing)
	wantResult(t, CheckInitrd(""), Fail, "no initramfs path")
	empty := writeFile(t, filepath.Join(dir, "empty.img"), "", 0o644)
	wantResult(t, CheckInitrd(empty), Fail, empty+" is empty")
	img := writeFile(t, filepath.Join(dir, "initramfs.img"), string(makeCpio(cpioEntry{"init", 0o100755, "x"})), 0o644)
	wantResult(t, CheckInitrd(img), Pass, img, "uncompressed cpio")
	gz := writeFile(t, filepath.Join(dir, "gz.img"), "\x1f\x8b\x08\x00", 0o644)
	wantResult(t, CheckInitrd(gz), Pass, "gzip")
}

func TestCheckGuestImage(t *testing.T) {
	dir := t.TempDir()
	agent := "agent"
	kernel := writeFile(t, filepath.Join(dir, "vmlinux"), "kernel", 0o644)
	initrd := writeFile(t, filepath.Join(dir, "initramfs.img"), string(makeCpio(cpioEntry{"init", 0o100755, agent})), 0o644)

	wantResult(t, CheckGuestImage(kernel, initrd), Pass, "no "+filepath.Join(dir, "guest.json"), "protocol v")

	info := func(sha string) {
		writeFile(t, filepath.Join(dir, "guest.json"), fmt.Sprintf(`{"kernelPackage": "linux-image-6.1.0-9-amd64",
"kernelPackageVersion": "6.1.27-1", "kernelVersion": "6.1.0-9-amd64", "agentSHA256": %q,
"initramfsCompression": "none", "modules": ["virtio.ko"]}`, sha), 0o644)
	}
	info(sum(agent))
	wantResult(t, CheckGuestImage(kernel, initrd), Pass, "kernel 6.1.0-9-amd64", sum(agent)[:12], "matches /init")

	info(sum("another agent"))
	wantResult(t, CheckGuestImage(kernel, initrd), Warn, "does not describe this initramfs", sum(agent)[:12])

	gz := writeFile(t, filepath.Join(dir, "gz.img"), "\x1f\x8b\x08\x00", 0o644)
	wantResult(t, CheckGuestImage(kernel, gz), Pass, "not compared")

	writeFile(t, filepath.Join(dir, "guest.json"), "{", 0o644)
	wantResult(t, CheckGuestImage(kernel, initrd), Warn, "guest.json")

	wantResult(t, CheckGuestImage(filepath.Join(dir, "gone", "vmlinux"), initrd), Warn, "kernel is missing")
}

func TestRunWithoutConfig(t *testing.T) {
	rs := Run(context.Background(), Options{ConfigErr: errors.New("config x.toml: unknown keys: a.b"), Root: t.TempDir()})
	if len(rs) == 0 || rs[0].Name != "config" || rs[0].Status != Fail || !strings.Contains(rs[0].Detail, "unknown keys") {
		t.Fatalf("first result %+v, want the config failure", rs[0])
	}
	for _, r := range rs {
		if r.Name == "qemu" || r.Name == "accelerator" || strings.HasPrefix(r.Name, "guest") {
			t.Errorf("%s checked without a configuration", r.Name)
		}
	}
	if !Failed(rs, false) {
		t.Error("a configuration that does not load does not fail the check")
	}
}

func TestEnvironment(t *testing.T) {
	dir := t.TempDir()
	kernel := writeFile(t, filepath.Join(dir, "vmlinux"), "kernel", 0o644)
	writeFile(t, filepath.Join(dir, "guest.json"), `{"kernelPackage": "linux-image-x", "kernelPackageVersion": "1", "kernelVersion": "6.1.0-x", "agentSHA256": "abc"}`, 0o644)
	set(t, &osRelease, writeFile(t, filepath.Join(dir, "osrelease"), "6.18.0-test\n", 0o644))
	set(t, &mountInfo, writeFile(t, filepath.Join(dir, "mountinfo"), mountsHybrid, 0o644))
	set(t, &resolveAccel, func(_ context.Context, want hypervisor.Accel, p hypervisor.ProbeConfig, cache string) (hypervisor.Accel, string, error) {
		if want != "auto" || p.Kernel != kernel || cache != "/run/test-root" {
			return "", "", fmt.Errorf("resolveAccel(%q, %+v, %q): wrong arguments", want, p, cache)
		}
		return hypervisor.AccelTCG, "a PVM host", nil
	})
	c := config.Default()
	c.Hypervisor.Kernel = kernel
	c.Hypervisor.Initrd = filepath.Join(dir, "initramfs.img")
	c.Hypervisor.Path = fakeQEMU(t, "QEMU emulator version 8.0.0", "q35 x")

	e := Environment(context.Background(), c, "/run/test-root", "1.2.3")
	checks := map[string][2]string{
		"version":        {e.Skiff.Version, "1.2.3"},
		"config file":    {e.Config.File, "built-in defaults"},
		"qemu version":   {e.Hypervisor.QEMUVersion, "8.0.0"},
		"accel":          {e.Hypervisor.Accel, "tcg"},
		"accel reason":   {e.Hypervisor.AccelReason, "a PVM host"},
		"accel config":   {e.Hypervisor.AccelConfigured, "auto"},
		"machine":        {e.Hypervisor.Machine, DefaultMachine()},
		"kernel":         {e.Guest.Kernel, kernel},
		"kernel version": {e.Guest.KernelVersion, "6.1.0-x"},
		"agent sha":      {e.Guest.AgentSHA256, "abc"},
		"host kernel":    {e.Host.Kernel, "6.18.0-test"},
		"cgroups":        {e.Host.Cgroups.Mode, "hybrid"},
		"state root":     {e.Skiff.StateRoot, "/run/test-root"},
	}
	for name, v := range checks {
		if v[0] != v[1] {
			t.Errorf("%s = %q, want %q", name, v[0], v[1])
		}
	}
	if e.Skiff.AgentProtocol < 1 || e.Hypervisor.AccelError != "" || e.Hypervisor.QEMUVersionError != "" {
		t.Errorf("env %+v", e)
	}
}

// On this host (root, with QEMU's proxy helper) VMs run jailed; as
// another user or without the helper, check says why not.
func TestCheckConfinement(t *testing.T) {
	r := CheckConfinement()
	helper := hypervisor.ProxyHelper()
	switch {
	case os.Geteuid() == 0 && helper != "":
		wantResult(t, r, Pass, "jailed", helper)
	case os.Geteuid() != 0:
		wantResult(t, r, Warn, "not root")
	default:
		wantResult(t, r, Warn, "virtfs-proxy-helper")
	}
}
