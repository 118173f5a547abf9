package hypervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// fakeFiles makes a binary, kernel and initrd that pass validation.
func fakeFiles(t *testing.T) (bin, kernel, initrd string) {
	t.Helper()
	d := t.TempDir()
	bin, kernel, initrd = filepath.Join(d, "qemu"), filepath.Join(d, "vmlinux"), filepath.Join(d, "initrd")
	for _, f := range []struct {
		p    string
		mode os.FileMode
	}{{bin, 0o755}, {kernel, 0o644}, {initrd, 0o644}} {
		if err := os.WriteFile(f.p, []byte("x"), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	return bin, kernel, initrd
}

func typicalConfig(t *testing.T) Config {
	t.Helper()
	bin, kernel, initrd := fakeFiles(t)
	state := t.TempDir()
	rootfs := filepath.Join(t.TempDir(), "root,fs") // a comma QEMU must see doubled
	vol := t.TempDir()
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	return Config{
		Name: "sb1", Binary: bin, Kernel: kernel, Initrd: initrd,
		KernelParams: []string{"skiff.debug=1"},
		Accel:        AccelTCG, VCPUs: 2, MemoryMiB: 256,
		Shares: []Share{
			{Tag: "rootfs", HostPath: rootfs, ReadOnly: true},
			{Tag: "vol0", HostPath: vol},
		},
		AgentSocket: filepath.Join(state, "agent.sock"),
		QMPSocket:   filepath.Join(state, "qmp.sock"),
		ConsoleLog:  filepath.Join(state, "console.log"),
		StderrLog:   filepath.Join(state, "qemu.log"),
		PIDFile:     filepath.Join(state, "qemu.pid"),
	}
}

// hasPair reports whether args contain flag immediately followed by value.
func hasPair(args []string, flag, value string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag && args[i+1] == value {
			return true
		}
	}
	return false
}

// Jailed, QEMU serves no file itself: each share is a proxy to its own
// file server, on the fds after QMP's.
func TestArgsConfinedShares(t *testing.T) {
	cfg := typicalConfig(t)
	q, err := newQEMU(cfg)
	if err != nil {
		t.Fatal(err)
	}
	q.helper = "/usr/lib/qemu/virtfs-proxy-helper"
	args := q.args()
	for _, w := range [][2]string{
		{"-fsdev", "proxy,id=fs0,sock_fd=6,readonly=on"},
		{"-fsdev", "proxy,id=fs1,sock_fd=7"},
	} {
		if !hasPair(args, w[0], w[1]) {
			t.Errorf("args lack %s %s\nargs: %q", w[0], w[1], args)
		}
	}
	if slices.ContainsFunc(args, func(a string) bool { return strings.Contains(a, "path=") }) {
		t.Errorf("a jailed QEMU is given a host path to serve: %q", args)
	}
}

func TestArgsTypical(t *testing.T) {
	cfg := typicalConfig(t)
	q, err := newQEMU(cfg)
	if err != nil {
		t.Fatal(err)
	}
	q.helper = "" // QEMU serves the shares itself: not root, or no proxy helper
	args := q.args()
	arch := archTable[runtime.GOARCH]
	want := [][2]string{
		{"-name", "sb1"},
		{"-machine", machineArg(arch.machine) + ",accel=tcg"},
		{"-cpu", "max"},
		{"-m", "256M"},
		{"-smp", "2"},
		{"-kernel", cfg.Kernel},
		{"-initrd", cfg.Initrd},
		{"-serial", "chardev:con"},
		{"-chardev", "socket,id=con,fd=3"},
		{"-chardev", "socket,id=agent,fd=4,server=on,wait=off"},
		{"-device", "virtio-serial-" + arch.bus + ",id=vser0"},
		{"-device", "virtserialport,chardev=agent,name=skiff.agent"},
		{"-fsdev", "local,id=fs0,path=" + strings.ReplaceAll(cfg.Shares[0].HostPath, ",", ",,") + ",security_model=none,multidevs=remap,readonly=on"},
		{"-device", "virtio-9p-" + arch.bus + ",fsdev=fs0,mount_tag=rootfs"},
		{"-fsdev", "local,id=fs1,path=" + cfg.Shares[1].HostPath + ",security_model=none,multidevs=remap"},
		{"-device", "virtio-9p-" + arch.bus + ",fsdev=fs1,mount_tag=vol0"},
		{"-chardev", "socket,id=qmp,fd=5,server=on,wait=off"},
		{"-mon", "chardev=qmp,mode=control"},
		{"-pidfile", cfg.PIDFile},
	}
	for _, w := range want {
		if !hasPair(args, w[0], w[1]) {
			t.Errorf("args lack %s %s\nargs: %q", w[0], w[1], args)
		}
	}
	if !strings.Contains(cfg.Shares[0].HostPath, ",") || !slices.ContainsFunc(args, func(a string) bool { return strings.Contains(a, "root,,fs") }) {
		t.Errorf("comma in share path not doubled: %q", args)
	}
	for _, f := range []string{"-nographic", "-nodefaults", "-no-user-config", "-no-reboot"} {
		if !slices.Contains(args, f) {
			t.Errorf("args lack %s", f)
		}
	}
	i := slices.Index(args, "-append")
	if i < 0 {
		t.Fatalf("no -append in %q", args)
	}
	cmdline := args[i+1]
	if !strings.HasPrefix(cmdline, "console="+arch.console+" quiet panic=-1") || !strings.HasSuffix(cmdline, " skiff.debug=1") {
		t.Errorf("kernel cmdline = %q", cmdline)
	}
	if runtime.GOARCH == "amd64" && !strings.Contains(cmdline, "8250.nr_uarts=1") {
		t.Errorf("x86 cmdline lacks its defaults: %q", cmdline)
	}
}

func TestArgsKVMAndMachines(t *testing.T) {
	cfg := typicalConfig(t)
	cfg.Accel = AccelKVM
	cfg.Machine = "microvm,acpi=off"
	q, err := newQEMU(cfg)
	if err != nil {
		t.Fatal(err)
	}
	args := q.args()
	for _, w := range [][2]string{
		{"-cpu", "host"},
		{"-machine", "microvm,acpi=off,accel=kvm"},
		{"-device", "virtio-serial-device,id=vser0"},
		{"-device", "virtio-9p-device,fsdev=fs0,mount_tag=rootfs"},
	} {
		if !hasPair(args, w[0], w[1]) {
			t.Errorf("args lack %s %s\nargs: %q", w[0], w[1], args)
		}
	}

	// s390x uses channel-attached virtio devices and the SCLP console.
	q.arch, q.cfg.Machine = archTable["s390x"], archTable["s390x"].machine
	args = q.args()
	if !hasPair(args, "-device", "virtio-9p-ccw,fsdev=fs0,mount_tag=rootfs") ||
		!strings.HasPrefix(args[slices.Index(args, "-append")+1], "console=ttysclp0 ") {
		t.Errorf("s390x args: %q", args)
	}
}

func TestNewQEMUValidation(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"missing binary", func(c *Config) { c.Binary = "/nonexistent/qemu" }, "binary"},
		{"binary not executable", func(c *Config) { os.Chmod(c.Binary, 0o644) }, "not executable"},
		{"missing kernel", func(c *Config) { c.Kernel = "/nonexistent/vmlinux" }, "/nonexistent/vmlinux"},
		{"kernel is a directory", func(c *Config) { c.Kernel = t.TempDir() }, "not a regular file"},
		{"missing initrd", func(c *Config) { c.Initrd = "" }, "initrd path is empty"},
		{"unresolved accel", func(c *Config) { c.Accel = AccelAuto }, "ResolveAccel"},
		{"bad accel", func(c *Config) { c.Accel = "hvf" }, `"hvf"`},
		{"no vcpus", func(c *Config) { c.VCPUs = 0 }, "vcpus"},
		{"small memory", func(c *Config) { c.MemoryMiB = 32 }, "memory is 32 MiB"},
		{"newline in path", func(c *Config) { c.ConsoleLog = "/tmp/a\nb" }, "console log"},
		{"bad tag", func(c *Config) { c.Shares[0].Tag = "a,b" }, "share tag"},
		{"share not a dir", func(c *Config) { c.Shares[1].HostPath = c.Kernel }, "not a directory"},
		{"param with space", func(c *Config) { c.KernelParams = []string{"a b"} }, "kernel parameter"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := typicalConfig(t)
			tc.mutate(&cfg)
			_, err := NewQEMU(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewQEMU error = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestNewQEMURelativePaths(t *testing.T) {
	cfg := typicalConfig(t)
	cfg.PIDFile = "rel/qemu.pid"
	q, err := newQEMU(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(q.cfg.PIDFile) {
		t.Errorf("pidfile %q not made absolute", q.cfg.PIDFile)
	}
}

// QEMU runs under its own seccomp filter with every option on: a guest
// that takes QEMU over can neither spawn a program nor gain privileges.
func TestArgsSeccomp(t *testing.T) {
	q, err := newQEMU(typicalConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	args := q.args()
	if !hasPair(args, "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny") {
		t.Errorf("args lack the seccomp sandbox: %q", args)
	}
	for _, a := range args {
		if strings.Contains(a, "exec:") {
			t.Errorf("arg %q runs a program, which spawn=deny forbids", a)
		}
	}
}

// On q35 the board devices no guest uses are off, and a machine string
// that sets one of them itself keeps its own value.
func TestArgsLeanQ35(t *testing.T) {
	cfg := typicalConfig(t)
	cfg.Machine = "q35"
	q, err := newQEMU(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := "q35,vmport=off,smbus=off,sata=off,hpet=off,i8042=off,smm=off,usb=off,accel=tcg"
	if !hasPair(q.args(), "-machine", want) {
		t.Errorf("args lack -machine %s: %q", want, q.args())
	}
	cfg.Machine = "q35,hpet=on"
	if q, err = newQEMU(cfg); err != nil {
		t.Fatal(err)
	}
	want = "q35,hpet=on,vmport=off,smbus=off,sata=off,i8042=off,smm=off,usb=off,accel=tcg"
	if !hasPair(q.args(), "-machine", want) {
		t.Errorf("args lack -machine %s: %q", want, q.args())
	}
	if DeviceModel("q35") == DeviceModel("q35,hpet=on") || DeviceModel("q35") == DeviceModel("microvm") {
		t.Errorf("device models of different machines are equal: %q", DeviceModel("q35"))
	}
}

// x86 machines with ACPI get a vmgenid device, so that template clones
// tell their guest it was copied; microvm without ACPI cannot have one.
func TestArgsVMGenID(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("vmgenid is given on amd64 only")
	}
	for machine, want := range map[string]bool{"q35": true, "pc": true, "q35,acpi=off": false, "microvm,acpi=off": false} {
		cfg := typicalConfig(t)
		cfg.Machine = machine
		q, err := newQEMU(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := hasPair(q.args(), "-device", "vmgenid,id=vmgenid0,guid=auto"); got != want {
			t.Errorf("%s: vmgenid device %v, want %v", machine, got, want)
		}
		if !strings.Contains(DeviceModel(machine), fmt.Sprintf("vmgenid=%t", want)) {
			t.Errorf("%s: device model %q does not say whether it has vmgenid", machine, DeviceModel(machine))
		}
	}
}

// A q35 clone of a template boots no kernel: QEMU is not given one to
// load, nor is it bound into its jail. A cold boot is, and so is a
// microvm clone.
func TestArgsKernelOnlyWhereBooted(t *testing.T) {
	for _, c := range []struct {
		machine  string
		incoming bool
		want     bool
	}{
		{"q35", false, true},
		{"q35", true, false},
		{"microvm,acpi=off", true, true},
	} {
		cfg := typicalConfig(t)
		cfg.Machine, cfg.Incoming = c.machine, c.incoming
		if c.incoming {
			cfg.MemoryFile = filepath.Join(t.TempDir(), "memory")
		}
		q, err := newQEMU(cfg)
		if err != nil {
			t.Fatal(err)
		}
		args := q.args()
		if got := hasPair(args, "-kernel", cfg.Kernel) && hasPair(args, "-initrd", cfg.Initrd) && slices.Contains(args, "-append"); got != c.want {
			t.Errorf("%s, incoming %v: kernel given %v, want %v\nargs: %q", c.machine, c.incoming, got, c.want, args)
		}
		// Nor is it in the jail of a QEMU that does not boot it.
		bound := slices.ContainsFunc(jailBinds(cfg), func(b jailBind) bool { return b.Path == cfg.Kernel })
		if bound != c.want {
			t.Errorf("%s, incoming %v: kernel bound in the jail %v, want %v", c.machine, c.incoming, bound, c.want)
		}
	}
}
