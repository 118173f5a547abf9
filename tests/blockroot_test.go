package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// blockRootfs makes an ext4 image of a copy of the test rootfs (with a
// marker file), loop-mounts it on a bundle's rootfs directory as
// containerd's devmapper snapshotter mounts a thin device, and returns
// the image and the mount point.
func blockRootfs(e *e2e.Env, name string) (img, rootfs string) {
	src := rootfsCopy(e, "src-"+name)
	img = filepath.Join(e.Dir, name+".img")
	rootfs = e.Mkdir(name + "-rootfs")
	for _, c := range [][]string{
		{"truncate", "-s", "64M", img},
		{"mkfs.ext4", "-q", "-d", src, img},
		{"mount", "-o", "loop", img, rootfs},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			e.T.Fatalf("%s: %v: %s", strings.Join(c, " "), err, out)
		}
	}
	e.T.Cleanup(func() { exec.Command("umount", rootfs).Run() })
	return img, rootfs
}

// imageFile reads path from an ext4 image without mounting it (debugfs):
// "" if it is not there.
func imageFile(t *testing.T, img, path string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+path, img).Output()
	if err != nil {
		t.Fatalf("debugfs %s: %v", img, err)
	}
	return string(out)
}

// A rootfs that is a block device's filesystem: the container sees its
// files and its writes land on the device. skiff gives the device to the
// guest as a disk (the guest's ext4 mounts it; the host's mount is taken
// over), plugged into a template's clone or a pooled VM once it runs;
// runc uses the host's mount. A read-only rootfs stays read-only on the
// device even to a privileged container that remounts it in its guest.
// Nothing is left: no mount, no loop device held.
func TestRootfsOnABlockDevice(t *testing.T) {
	t.Parallel()
	script := `
echo content=$(cat /marker)
if echo guest > /written 2>/dev/null; then echo write=done; else echo write=refused; fi
if [ "$REMOUNT" = 1 ]; then mount -o remount,rw / 2>/dev/null; echo again > /written2 2>/dev/null; fi
sync
echo roottype=$(awk '$2 == "/" {print $3}' /proc/mounts | tail -n 1)
`
	variants := []struct {
		name string
		ro   bool
		from string // where skiff's VM comes from
	}{{"rw", false, "template"}, {"ro", true, "template"}}
	if e2e.IsSkiff() {
		variants = append(variants, struct {
			name string
			ro   bool
			from string
		}{"pool", false, "pool"})
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			e := e2e.NewSerialEnv(t) // its own factory directory
			img, rootfs := blockRootfs(e, "block-"+v.name)
			b := e.Bundle("block-"+v.name, e2e.Sh(script), e2e.Privileged, func(s *specs.Spec) {
				s.Root = &specs.Root{Path: rootfs, Readonly: v.ro}
				if v.ro && e2e.IsSkiff() {
					s.Process.Env = append(s.Process.Env, "REMOUNT=1")
				}
			})
			var r e2e.Result
			if e2e.IsSkiff() {
				cfg, _ := e.FactoryConfig(0)
				if v.from == "pool" {
					cfg, _, _ = startPool(e, 1)
				}
				var log string
				r, log = runWithLog(e, cfg, b, e.ID("block-"+v.name))
				e.MustOK(r)
				if l, _ := os.ReadFile(log); !strings.Contains(string(l), "from="+v.from) {
					t.Errorf("the VM did not come from the %s; log:\n%s", v.from, l)
				}
				// The guest's own mount: the host's was taken over.
				if mounted(rootfs) {
					t.Errorf("%s is still mounted on the host while the guest had the device", rootfs)
				}
			} else {
				r = e.MustOK(e.RT("run", "--bundle", b, e.ID("block-"+v.name)))
				exec.Command("umount", rootfs).Run() // runc's is the test's own
			}
			kv := e2e.KeyValues(r.Stdout)
			e2e.WantKV(t, kv, "content", "from-the-host")
			e2e.WantKV(t, kv, "roottype", "ext4")
			if v.ro {
				e2e.WantKV(t, kv, "write", "refused")
				if got := imageFile(t, img, "/written") + imageFile(t, img, "/written2"); got != "" {
					t.Errorf("a read-only rootfs was written on its device: %q", got)
				}
			} else {
				e2e.WantKV(t, kv, "write", "done")
				if got := imageFile(t, img, "/written"); got != "guest\n" {
					t.Errorf("the container's write is not on the device: /written = %q", got)
				}
			}
			e.Poll(func() bool { return loopDevicesOf(img) == "" },
				func() string { return "loop device still attached to " + img + ": " + loopDevicesOf(img) })
			if t.Failed() {
				t.Logf("container output:\n%s%s", r.Stdout, r.Stderr)
			}
		})
	}
}

// mounted reports whether path is a mount point in this namespace.
func mounted(path string) bool {
	for _, m := range e2e.MountsBelow(filepath.Dir(path)) {
		if m == path {
			return true
		}
	}
	return false
}

// loopDevicesOf lists the loop devices backed by img ("" if none).
func loopDevicesOf(img string) string {
	out, _ := exec.Command("losetup", "-j", img).Output()
	return strings.TrimSpace(string(out))
}

// A pod's container whose rootfs is a block device (containerd's
// devmapper snapshotter gives every container one) gets it as a disk
// plugged into the pod's running VM, and its slot back when it is
// removed: two such containers one after the other, then one beside a
// running one, each sees its own files and writes to its own device.
// runc passes the same test on the host's mounts.
func TestPodContainerRootfsOnABlockDevice(t *testing.T) {
	e := e2e.NewEnv(t)
	ns := e2e.NewNetns(t)
	sb := e.ID("pod")
	sbPID, _ := e.CreateStarted(sb, e.Bundle("pod", e2e.Sh(termLoop), podSandbox(ns.Path)), "started")
	script := `
echo content=$(cat /marker)
echo guest-$NAME > /written && sync && echo write=done
echo roottype=$(awk '$2 == "/" {print $3}' /proc/mounts | tail -n 1)
`
	member := func(name, then string) (img, rootfs, bundle string) {
		img, rootfs = blockRootfs(e, "member-"+name)
		bundle = e.Bundle(name, e2e.Sh(script+then), podMember(sb, sbPID), func(s *specs.Spec) {
			s.Root = &specs.Root{Path: rootfs}
			s.Process.Env = append(s.Process.Env, "NAME="+name)
		})
		return img, rootfs, bundle
	}
	check := func(e *e2e.Env, name, img, rootfs, stdout string) {
		kv := e2e.KeyValues(stdout)
		e2e.WantKVs(e.T, kv, map[string]string{"content": "from-the-host", "write": "done", "roottype": "ext4"})
		if e2e.IsSkiff() && mounted(rootfs) {
			e.T.Errorf("%s is still mounted on the host while the guest had the device", rootfs)
		}
		exec.Command("umount", rootfs).Run() // runc's is the test's own
		if got := imageFile(e.T, img, "/written"); got != "guest-"+name+"\n" {
			e.T.Errorf("%s's write is not on its device: /written = %q", name, got)
		}
		e.Poll(func() bool { return loopDevicesOf(img) == "" },
			func() string { return "loop device still attached to " + img + " after its container went" })
	}
	e.Step("one after the other", func(e *e2e.Env) {
		for _, name := range []string{"first", "second"} {
			img, rootfs, b := member(name, "")
			r := e.MustOK(e.RT("run", "--bundle", b, e.ID(name)))
			check(e, name, img, rootfs, r.Stdout)
		}
	})
	e.Step("beside a running one", func(e *e2e.Env) {
		img, rootfs, b := member("long", termLoop)
		id := e.ID("long")
		pid, out := e.CreateStarted(id, b, "started")
		img2, rootfs2, b2 := member("short", "")
		r := e.MustOK(e.RT("run", "--bundle", b2, e.ID("short")))
		check(e, "short", img2, rootfs2, r.Stdout)
		e.MustOK(e.RT("kill", id, "TERM"))
		e.WaitGone(pid)
		e.MustOK(e.RT("delete", id))
		check(e, "long", img, rootfs, e.WaitOutput(out, "roottype="))
	})
	e.MustOK(e.RT("kill", sb, "TERM"))
	e.WaitGone(sbPID)
	e.MustOK(e.RT("delete", sb))
}
