package hypervisor

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// Over virtio-fs, each share is a vhost-user device on the socket the
// guard connected (after QMP's fd), and the guest's RAM is a shared memfd
// virtiofsd can map; QEMU is given no host path.
func TestArgsVirtioFS(t *testing.T) {
	for _, machine := range []string{"q35", "microvm"} {
		cfg := typicalConfig(t)
		cfg.Machine = machine
		q, err := newQEMU(cfg)
		if err != nil {
			t.Fatal(err)
		}
		q.cfg.SharedFS, q.helper, q.virtiofsd = FSVirtio, "/usr/lib/qemu/virtfs-proxy-helper", "/usr/lib/qemu/virtiofsd"
		args := q.args()
		bus := q.arch.bus
		want := [][2]string{
			{"-object", "memory-backend-memfd,id=mem,size=256M,share=on"},
			{"-chardev", "socket,id=vfs0,fd=6"},
			{"-device", "vhost-user-fs-" + bus + ",chardev=vfs0,tag=rootfs,queue-size=1024"},
			{"-chardev", "socket,id=vfs1,fd=7"},
			{"-device", "vhost-user-fs-" + bus + ",chardev=vfs1,tag=vol0,queue-size=1024"},
		}
		if bus == "device" {
			want = append(want, [2]string{"-global", "virtio-mmio.force-legacy=false"})
		}
		for _, w := range want {
			if !hasPair(args, w[0], w[1]) {
				t.Errorf("%s: args lack %s %s\nargs: %q", machine, w[0], w[1], args)
			}
		}
		m := args[slices.Index(args, "-machine")+1]
		if !strings.HasSuffix(m, ",memory-backend=mem") {
			t.Errorf("%s: -machine %s does not use the shared memory backend", machine, m)
		}
		if slices.ContainsFunc(args, func(a string) bool { return strings.Contains(a, "fsdev") || strings.Contains(a, "path=") }) {
			t.Errorf("%s: a virtio-fs VM has 9p devices or host paths: %q", machine, args)
		}
	}
}

// A template or a clone cannot share over virtio-fs: its RAM is a file,
// mapped privately in a clone.
func TestVirtioFSRefusedForTemplates(t *testing.T) {
	cfg := typicalConfig(t)
	cfg.SharedFS = FSVirtio
	cfg.MemoryFile = os.DevNull
	if err := validate(&cfg); err == nil || !strings.Contains(err.Error(), "virtio-fs") {
		t.Errorf("virtio-fs with a memory file: %v, want an error about virtio-fs", err)
	}
	cfg.MemoryFile, cfg.SharedFS = "", "nfs"
	if err := validate(&cfg); err == nil {
		t.Error("shared filesystem nfs accepted")
	}
}

// virtiofsd is chrooted into its share, with no way to set file
// capabilities or make devices, and a path with a comma stays one value.
func TestVirtiofsdArgs(t *testing.T) {
	args := virtiofsdArgs("/usr/lib/qemu/virtiofsd", Share{Tag: "rootfs", HostPath: `/b/root,fs\x`})
	for _, w := range [][2]string{
		{"-o", `source=/b/root\,fs\\x`},
		{"-o", "sandbox=chroot"},
		{"-o", "modcaps=-setfcap:-mknod"},
		{"-o", "no_xattr"},
	} {
		if !hasPair(args, w[0], w[1]) {
			t.Errorf("virtiofsd args lack %s %s: %q", w[0], w[1], args)
		}
	}
	if args[1] != "--fd=3" {
		t.Errorf("virtiofsd does not take its socket at fd 3: %q", args)
	}
}
