package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// sharedFSVariants are the ways skiff brings files to a guest, as global
// flags: a template's clone (the default configuration: 9p), and cold
// boots over 9p and over virtio-fs. runc has one way, its own.
func sharedFSVariants(e *e2e.Env) map[string][]string {
	if !e2e.IsSkiff() {
		return map[string][]string{"runc": nil}
	}
	return map[string][]string{"template": nil, "9p": e.SharedFSArgs("9p"), "virtio-fs": e.SharedFSArgs("virtio-fs")}
}

// wantFSType is the filesystem a variant's guest mounts shares with, ""
// for runc (the host's own).
var wantFSType = map[string]string{"template": "9p", "9p": "9p", "virtio-fs": "virtiofs"}

// rootfsCopy is a writable copy of the test rootfs, with a marker file
// written on the host.
func rootfsCopy(e *e2e.Env, name string) string {
	rootfs := filepath.Join(e.Dir, name)
	if out, err := exec.Command("cp", "-a", e2e.RootfsDir(), rootfs).CombinedOutput(); err != nil {
		e.T.Fatalf("copy the rootfs: %v: %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "marker"), []byte("from-the-host\n"), 0o644); err != nil {
		e.T.Fatal(err)
	}
	return rootfs
}

// Each way of sharing gives the container the same files: what the host
// put in the rootfs is there, writes to the rootfs and to a volume land on
// the host, and a read-only volume stays read-only, even to a privileged
// container that remounts it read-write in its guest (the host refuses
// the write). Nothing is left after delete (the leak check: no file
// server, no mount).
func TestRootfsOverEachSharedFS(t *testing.T) {
	e := e2e.NewEnv(t)
	script := `
echo content=$(cat /marker)
echo written > /written && echo rootwrite=done
echo vol > /vol/w && echo volwrite=done
if echo x > /ro/w 2>/dev/null; then echo rowrite=done; else echo rowrite=refused; fi
if [ "$REMOUNT" = 1 ]; then mount -o remount,rw /ro 2>/dev/null; fi
if echo x > /ro/w2 2>/dev/null; then echo rowrite2=done; else echo rowrite2=refused; fi
echo roottype=$(awk '$2 == "/" {print $3}' /proc/mounts | tail -n 1)
echo voltype=$(awk '$2 == "/vol" {print $3}' /proc/mounts)
`
	for name, args := range sharedFSVariants(e) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := e.For(t)
			rootfs := rootfsCopy(e, "rootfs-"+name)
			vol, ro := e.Mkdir("vol-"+name), e.Mkdir("ro-"+name)
			remount := "0"
			if e2e.IsSkiff() {
				// A guest owns its kernel: the host must hold the line.
				// (runc's container may make its own bind writable.)
				remount = "1"
			}
			b := e.Bundle(name, e2e.Sh(script), e2e.Privileged,
				e2e.Mounts(e2e.Bind("/vol", vol, "rbind", "rw"), e2e.Bind("/ro", ro, "rbind", "ro")),
				func(s *specs.Spec) {
					s.Root = &specs.Root{Path: rootfs}
					s.Process.Env = append(s.Process.Env, "REMOUNT="+remount)
				})
			r := e.MustOK(e.RT(append(args, "run", "--bundle", b, e.ID(name))...))
			kv := e2e.KeyValues(r.Stdout)
			e2e.WantKVs(t, kv, map[string]string{"content": "from-the-host", "rootwrite": "done", "volwrite": "done",
				"rowrite": "refused", "rowrite2": "refused"})
			if fs := wantFSType[name]; fs != "" {
				e2e.WantKV(t, kv, "roottype", fs)
				e2e.WantKV(t, kv, "voltype", fs)
			}
			for path, want := range map[string]string{filepath.Join(rootfs, "written"): "written\n", filepath.Join(vol, "w"): "vol\n"} {
				if b, err := os.ReadFile(path); err != nil || string(b) != want {
					t.Errorf("the container's write is not on the host: %s: %q, %v", path, b, err)
				}
			}
			for _, p := range []string{"w", "w2"} {
				if _, err := os.Stat(filepath.Join(ro, p)); err == nil {
					t.Errorf("the container wrote %s in a read-only volume", p)
				}
			}
			if t.Failed() {
				t.Logf("container output:\n%s%s", r.Stdout, r.Stderr)
			}
		})
	}
}

// A file server killed under a running container (a virtiofsd, or 9p's
// proxy helper) stops its VM: the guest's requests to that share would
// wait for ever. The container's caller sees it die (137, as when QEMU is
// killed), --log says which server went, and nothing is left.
func TestFaultFileServerKilled(t *testing.T) {
	e2e.SkiffOnly(t)
	if os.Geteuid() != 0 {
		t.Skip("file servers run out of QEMU only when skiff is root")
	}
	e := e2e.NewEnv(t)
	for _, fs := range []string{"9p", "virtio-fs"} {
		t.Run(fs, func(t *testing.T) {
			t.Parallel()
			e := e.For(t)
			vol := e.Mkdir("vol-" + fs)
			b := e.Bundle(fs, e2e.Sh("echo up; while true; do cat /vol/* >/dev/null 2>&1; sleep 0.2; done"),
				e2e.Mounts(e2e.Bind("/vol", vol, "rbind", "rw")))
			cmd, logPath, qemu := runInBackground(e, e.ID(fs), b, e.SharedFSArgs(fs)...)
			servers := fileServers(qemu)
			if len(servers) == 0 {
				t.Fatalf("no file server beside QEMU %d", qemu)
			}
			// The volumes' share, started last.
			killAndWantVMLost(e, servers[len(servers)-1], cmd, logPath, "file server of share")
			e.WaitGone(qemu)
			for _, s := range servers {
				e.WaitGone(s)
			}
		})
	}
}
