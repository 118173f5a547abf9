package tests

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// Mounts: a read-only rootfs, read-only and read-write bind mounts of host
// directories, a bind-mounted single file, and a tmpfs.
func TestMounts(t *testing.T) {
	e := e2e.NewEnv(t)
	roDir := filepath.Dir(e.WriteFile("host-ro/seed", "seed-content\n"))
	rwDir := e.Mkdir("host-rw")
	file := e.WriteFile("host-file", "file-content\n")
	b := e.Bundle("c", e2e.Sh(`
echo "rootfs-touch=$(touch /x 2>&1; echo rc=$?)"
echo "ro-read=$(cat /mnt/ro/seed)"
echo "ro-write=$( (echo nope > /mnt/ro/new) 2>&1; echo rc=$?)"
echo "rw-write=$( (echo from-container > /mnt/rw/out) 2>&1; echo rc=$?)"
echo "myfile=$(cat /etc/myfile)"
echo "scratch-fs=$(stat -f -c %T /scratch)"
echo "scratch=$(echo tmp-data > /scratch/f && cat /scratch/f)"
`), func(s *specs.Spec) {
		s.Root.Readonly = true
		s.Mounts = append(s.Mounts,
			e2e.Bind("/mnt/ro", roDir, "rbind", "ro"),
			e2e.Bind("/mnt/rw", rwDir, "rbind", "rw"),
			e2e.Bind("/etc/myfile", file, "bind", "ro"),
			specs.Mount{Destination: "/scratch", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}},
		)
	})
	r := e.MustOK(e.RT("run", "--bundle", b, e.ID("c1")))
	kv := e2e.KeyValues(r.Stdout)

	// The shell prints the error then the status; root in the container
	// owns "/" so only a read-only mount can refuse it.
	for _, key := range []string{"rootfs-touch", "ro-write"} {
		if v := kv[key]; strings.HasSuffix(v, "rc=0") || !strings.Contains(v, "Read-only file system") {
			t.Errorf("%s: %q, want a refusal with EROFS", key, v)
		}
	}
	if _, err := os.Stat(filepath.Join(roDir, "new")); err == nil {
		t.Errorf("a write through the read-only bind mount reached the host")
	}
	e2e.WantKV(t, kv, "ro-read", "seed-content")
	e2e.WantKV(t, kv, "rw-write", "rc=0")
	e2e.WantKV(t, kv, "myfile", "file-content")
	e2e.WantKV(t, kv, "scratch-fs", "tmpfs")
	e2e.WantKV(t, kv, "scratch", "tmp-data")

	got, err := os.ReadFile(filepath.Join(rwDir, "out"))
	if err != nil {
		t.Errorf("the write to the read-write bind mount is not on the host: %v", err)
	} else if string(got) != "from-container\n" {
		t.Errorf("host sees %q in the read-write mount, want %q", got, "from-container\n")
	}
	if _, err := os.Stat(filepath.Join(e2e.RootfsDir(), "x")); err == nil {
		t.Errorf("touch /x reached the read-only rootfs on the host")
	}
}

// A mount the host makes below a bind-mounted directory after the
// container started shows inside it, as with runc and rslave propagation
// (Kubernetes' HostToContainer): the directory is a shared mount on the
// host, as kubelet makes its volumes'.
func TestBindMountSeesLaterHostMounts(t *testing.T) {
	e := e2e.NewEnv(t)
	vol := filepath.Join(e.Dir, "vol")
	late := filepath.Join(vol, "late")
	if err := os.MkdirAll(late, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(vol, vol, "", syscall.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Unmount(vol, syscall.MNT_DETACH) })
	if err := syscall.Mount("", vol, "", syscall.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	b := e.Bundle("c", e2e.Sh("echo started; while [ ! -e /later-host-mounts/late/marker ]; do sleep 0.1; done; cat /later-host-mounts/late/marker"),
		e2e.Mounts(e2e.Bind("/later-host-mounts", vol, "rbind", "rslave")))
	id := e.ID("c")
	_, out := e.CreateStarted(id, b, "started")
	if err := syscall.Mount("tmpfs", late, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(late, "marker"), []byte("mounted-later\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.WaitOutput(out, "mounted-later")
	e.WaitStatus(id, "stopped")
	e.MustOK(e.RT("delete", id))
}

// In the container's mountinfo, a bind mount of a host directory is a
// bind of a directory of that name (its root field ends in it), as with
// runc: the OCI validation program mounts finds binds so. Propagation
// options (shared, slave, private, unbindable) are accepted on binds.
func TestBindMountRootNamesItsSource(t *testing.T) {
	e := e2e.NewEnv(t)
	dir := e.Mkdir("bind-source-name")
	b := e.Bundle("bindroot", e2e.Sh(`while read id parent dev root point rest; do
	case $point in /mnt/named-*) echo "$point=$root";; esac
done < /proc/self/mountinfo`), e2e.Mounts(
		e2e.Bind("/mnt/named-private", dir, "rbind", "rprivate"),
		e2e.Bind("/mnt/named-shared", dir, "bind", "shared"),
		e2e.Bind("/mnt/named-slave", dir, "rbind", "rslave"),
		e2e.Bind("/mnt/named-unbindable", dir, "bind", "unbindable"),
	))
	r := e.MustOK(e.RT("run", "--bundle", b, e.ID("bindroot")))
	kv := e2e.KeyValues(r.Stdout)
	for _, m := range []string{"private", "shared", "slave", "unbindable"} {
		root, ok := kv["/mnt/named-"+m]
		if !ok || filepath.Base(root) != filepath.Base(dir) {
			t.Errorf("/mnt/named-%s: mountinfo root %q, want one ending in /%s (output %q)", m, root, filepath.Base(dir), r.Stdout)
		}
	}
}
