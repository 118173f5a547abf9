package tests

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The process section of config.json is honoured. One container prints
// everything, one "key=value" per line, to spare VM boots.
func TestProcessConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.bundle("c", sh(`
echo "foo=$FOO"
echo "cwd=$(pwd)"
echo "uid=$(id -u)"
echo "gid=$(id -g)"
echo "groups=$(id -G)"
echo "hostname=$(hostname)"
echo "nofile-soft=$(ulimit -Sn)"
echo "nofile-hard=$(ulimit -Hn)"
`), func(s *specs.Spec) {
		s.Process.Env = append(s.Process.Env, "FOO=bar baz")
		s.Process.Cwd = "/srv/app"
		s.Process.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{2000}}
		s.Hostname = "e2e-host"
		// Soft below hard, and both unlike any kernel's or host's default,
		// so that only a runtime that applies the rlimit passes.
		s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 512, Hard: 1024}}
	})
	r := e.mustOK(e.rt("run", "--bundle", b, e.id("c1")))
	kv := keyValues(r.stdout)
	wantKV(t, kv, "foo", "bar baz")
	wantKV(t, kv, "cwd", "/srv/app")
	wantKV(t, kv, "uid", "1000")
	wantKV(t, kv, "gid", "1000")
	wantKV(t, kv, "hostname", "e2e-host")
	wantKV(t, kv, "nofile-soft", "512")
	wantKV(t, kv, "nofile-hard", "1024")
	groups := strings.Fields(kv["groups"])
	if !contains(groups, "1000") || !contains(groups, "2000") {
		t.Errorf("id -G = %q, want 1000 and the additional gid 2000", kv["groups"])
	}
	if contains(groups, "0") {
		t.Errorf("id -G = %q: the process kept root's group", kv["groups"])
	}
}

// Mounts: a read-only rootfs, read-only and read-write bind mounts of host
// directories, a bind-mounted single file, and a tmpfs.
func TestMounts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	roDir := filepath.Join(e.dir, "host-ro")
	rwDir := filepath.Join(e.dir, "host-rw")
	file := filepath.Join(e.dir, "host-file")
	for _, d := range []string{roDir, rwDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(roDir, "seed"), []byte("seed-content\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("file-content\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := e.bundle("c", sh(`
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
			specs.Mount{Destination: "/mnt/ro", Type: "bind", Source: roDir, Options: []string{"rbind", "ro"}},
			specs.Mount{Destination: "/mnt/rw", Type: "bind", Source: rwDir, Options: []string{"rbind", "rw"}},
			specs.Mount{Destination: "/etc/myfile", Type: "bind", Source: file, Options: []string{"bind", "ro"}},
			specs.Mount{Destination: "/scratch", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}},
		)
	})
	r := e.mustOK(e.rt("run", "--bundle", b, e.id("c1")))
	kv := keyValues(r.stdout)

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
	wantKV(t, kv, "ro-read", "seed-content")
	wantKV(t, kv, "rw-write", "rc=0")
	wantKV(t, kv, "myfile", "file-content")
	wantKV(t, kv, "scratch-fs", "tmpfs")
	wantKV(t, kv, "scratch", "tmp-data")

	got, err := os.ReadFile(filepath.Join(rwDir, "out"))
	if err != nil {
		t.Errorf("the write to the read-write bind mount is not on the host: %v", err)
	} else if string(got) != "from-container\n" {
		t.Errorf("host sees %q in the read-write mount, want %q", got, "from-container\n")
	}
	if _, err := os.Stat(filepath.Join(rootfsDir, "x")); err == nil {
		t.Errorf("touch /x reached the read-only rootfs on the host")
	}
}

// A mount the host makes below a bind-mounted directory after the
// container started shows inside it, as with runc and rslave propagation
// (Kubernetes' HostToContainer): the directory is a shared mount on the
// host, as kubelet makes its volumes'.
func TestBindMountSeesLaterHostMounts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	vol := filepath.Join(e.dir, "vol")
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
	b := e.bundle("c", sh("echo started; while [ ! -e /later-host-mounts/late/marker ]; do sleep 0.1; done; cat /later-host-mounts/late/marker"),
		func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/later-host-mounts", Type: "bind", Source: vol, Options: []string{"rbind", "rslave"}})
		})
	id := e.id("c")
	_, out := e.create(id, b)
	e.mustOK(e.rt("start", id))
	e.waitOutput(out, "started")
	if err := syscall.Mount("tmpfs", late, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(late, "marker"), []byte("mounted-later\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.waitOutput(out, "mounted-later")
	e.waitStatus(id, "stopped")
	e.mustOK(e.rt("delete", id))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
