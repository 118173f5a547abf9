package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// Guest-local scratch: the mounts that need a real local filesystem (the
// build directories of a privileged container, the paths the annotation
// io.skiff.scratch or storage.scratch_paths names, Kubernetes emptyDirs)
// live on an ext4 disk inside the guest, backed by a sparse file in the
// sandbox's state directory that goes with the sandbox.

// fsType is a shell function printing the filesystem mounted at a path
// as the container's mount table says (stat -f would show the host's
// through 9p).
const fsType = `fstype() { grep " $1 " /proc/self/mounts | tail -n1 | cut -d' ' -f3; }`

// buildFcap builds the fcap helper (setcap/getcap for a busybox rootfs)
// into a directory of its own, for a bind mount.
func buildFcap(e *e2e.Env) string {
	e.T.Helper()
	dir := e.Mkdir("tools")
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	build := exec.Command(goBin, "build", "-trimpath", "-o", filepath.Join(dir, "fcap"), "./tests/internal/fcap")
	build.Dir, build.Env = "..", append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		e.T.Fatalf("build the fcap helper: %v\n%s", err, out)
	}
	return dir
}

// A privileged container (restored from a VM template, the default):
// its build directories are ext4 in the guest, a spec bind mount at one
// of them is replaced, overlayfs takes its upper directory there, a file
// capability set there reads back, /dev/fuse opens, a write past the
// disk's size (io.skiff.scratch.size) fails with ENOSPC in the guest while
// the host file stays at its size; delete --force of the running
// container leaves no scratch file, mount or state directory.
func TestScratchPrivileged(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	tools := buildFcap(e)
	hostDocker := filepath.Dir(e.WriteFile("host-docker/seed", "seed\n"))
	b := e.Bundle("priv", e2e.Sh(`
`+fsType+`
echo "fs-containers=$(fstype /var/lib/containers)"
echo "fs-buildkit=$(fstype /var/lib/buildkit)"
echo "fs-data=$(fstype /data)"
echo "docker-seen=$(ls -A /var/lib/docker)"
echo from-container > /var/lib/docker/new
d=/var/lib/containers/ov
mkdir -p $d/lower $d/upper $d/work $d/merged
echo lower > $d/lower/f
echo "overlay=$(mount -t overlay overlay -o lowerdir=$d/lower,upperdir=$d/upper,workdir=$d/work $d/merged 2>&1 && echo changed > $d/merged/f && cat $d/upper/f)"
echo "whiteout=$(rm -f $d/merged/f 2>&1; stat -c %F $d/upper/f)"
echo x > /var/lib/containers/capfile
echo "fcap-set=$(/mnt/ro/fcap set /var/lib/containers/capfile 2>&1; echo rc=$?)"
echo "fcap=$(/mnt/ro/fcap get /var/lib/containers/capfile 2>&1)"
echo "fuse=$( (exec 3<>/dev/fuse) 2>&1 && echo opened)"
echo "enospc=$(dd if=/dev/zero of=/data/big bs=1M count=100 2>&1 | grep -o 'No space left on device' | head -n1)"
echo ready
sleep 600
`), e2e.Privileged, func(s *specs.Spec) {
		s.Annotations = map[string]string{"io.skiff.scratch": "/data", "io.skiff.scratch.size": "64M"}
		s.Mounts = append(s.Mounts,
			e2e.Bind("/mnt/ro", tools, "rbind", "ro"),
			e2e.Bind("/var/lib/docker", hostDocker, "rbind", "rw"))
	})
	id := e.ID("priv")
	pid, out := e.CreateStarted(id, b, "ready")
	kv := e2e.KeyValues(e.WaitOutput(out, "ready"))
	e2e.WantKVs(t, kv, map[string]string{
		"fs-containers": "ext4",
		"fs-buildkit":   "ext4",
		"fs-data":       "ext4",
		"docker-seen":   "",
		"overlay":       "changed",
		"whiteout":      "character special file",
		"fcap-set":      "rc=0",
		"fcap":          "/var/lib/containers/capfile cap_net_raw=ep",
		"fuse":          "opened",
		"enospc":        "No space left on device",
	})
	if _, err := os.Stat(filepath.Join(hostDocker, "new")); err == nil {
		t.Errorf("a write to the scratch /var/lib/docker reached the host directory the spec bind-mounted there")
	}

	img := filepath.Join(e.Root, id, "scratch.img")
	var st syscall.Stat_t
	if err := syscall.Stat(img, &st); err != nil {
		t.Fatalf("no scratch disk file in the state directory: %v", err)
	}
	if st.Size != 64<<20 || st.Blocks*512 > 64<<20 {
		t.Errorf("scratch file %s: size %d, %d bytes allocated; want both at most 64 MiB", img, st.Size, st.Blocks*512)
	}

	e.ForceDelete(id, pid)
	e.AssertNoStateDir(id, "delete --force")
	if _, err := os.Stat(img); !os.IsNotExist(err) {
		t.Errorf("scratch file %s left after delete --force (%v)", img, err)
	}
	e.AssertNoLeaks()
}

// Cold boot (no template), sharing over virtio-fs: a path the
// configuration names (storage.scratch_paths) and one the annotation
// names are scratch for an ordinary container; the disk file is in the
// state directory while the container exists and goes with delete.
func TestScratchColdBoot(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	cfg := e.WriteFile("cold.toml", "[factory]\ntemplate = false\n[storage]\nscratch_paths = [\"/srv/app\"]\n[runtime]\nshared_fs = \"virtio-fs\"\n")
	b := e.Bundle("cold", e2e.Sh(`
`+fsType+`
echo "fs-app=$(fstype /srv/app)"
echo "fs-data=$(fstype /data)"
echo "fs-root=$(fstype /)"
echo "write=$(echo data > /data/f && echo app > /srv/app/f && cat /data/f /srv/app/f | tr '\n' ' ')"
`), func(s *specs.Spec) {
		s.Annotations = map[string]string{"io.skiff.scratch": "/data"}
	})
	id := e.ID("cold")
	_, out := e.Create(id, b, "--config", cfg)
	e.MustOK(e.RT("--config", cfg, "start", id))
	e.WaitStatus(id, "stopped")
	kv := e2e.KeyValues(e.WaitOutput(out, "write="))
	e2e.WantKVs(t, kv, map[string]string{
		"fs-app":  "ext4",
		"fs-data": "ext4",
		"fs-root": "virtiofs",
		"write":   "data app ",
	})
	img := filepath.Join(e.Root, id, "scratch.img")
	if _, err := os.Stat(img); err != nil {
		t.Errorf("no scratch disk file in the state directory before delete: %v", err)
	}
	e.MustOK(e.RT("--config", cfg, "delete", id))
	e.AssertNoStateDir(id, "delete")
	if _, err := os.Stat(img); !os.IsNotExist(err) {
		t.Errorf("scratch file %s left after delete (%v)", img, err)
	}
	for _, f := range []string{"data", "srv/app"} {
		if _, err := os.Stat(filepath.Join(e2e.RootfsDir(), f, "f")); err == nil {
			t.Errorf("a write to scratch /%s reached the rootfs on the host", f)
		}
	}
	e.AssertNoLeaks()
}

// A pod's containers share the sandbox's disk: an emptyDir (a bind of a
// kubelet emptyDir path) is one directory on it that both containers
// mounting it see, and nothing reaches the host's emptyDir directory;
// each container's own scratch paths are separate, and a container
// created again under the same ID starts with empty ones.
func TestScratchPod(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	ns := e2e.NewNetns(t)
	emptyDir := e.Mkdir("pods/0a1b/volumes/kubernetes.io~empty-dir/cache")
	sb := e.ID("spod")
	sbPID, _ := e.CreateStarted(sb, e.Bundle("spod", e2e.Sh(termLoop), podSandbox(ns.Path)), "started")
	member := func(script string) func(*specs.Spec) {
		return func(s *specs.Spec) {
			podMember(sb, sbPID)(s)
			s.Annotations["io.skiff.scratch"] = "/data"
			s.Process.Args = e2e.Sh(fsType + "\n" + script)
			s.Mounts = append(s.Mounts, e2e.Bind("/scratch", emptyDir, "rbind", "rw"))
		}
	}
	a := e.ID("sa")
	aPID, aOut := e.CreateStarted(a, e.Bundle("sa", nil, member(`
echo "fs-cache=$(fstype /scratch)"
echo "data-before=$(ls /data)"
echo from-a > /scratch/shared; echo a > /data/a
echo started; `+termLoop)), "started")
	b := e.ID("sb")
	bPID, bOut := e.CreateStarted(b, e.Bundle("sb", nil, member(`
echo "shared=$(cat /scratch/shared)"
echo "data-b=$(ls /data)"
echo started; `+termLoop)), "started")

	kv := e2e.KeyValues(e.WaitOutput(aOut, "started"))
	e2e.WantKVs(t, kv, map[string]string{"fs-cache": "ext4", "data-before": ""})
	kv = e2e.KeyValues(e.WaitOutput(bOut, "started"))
	e2e.WantKVs(t, kv, map[string]string{"shared": "from-a", "data-b": ""})
	if ents, _ := os.ReadDir(emptyDir); len(ents) > 0 {
		t.Errorf("the pod's writes to its scratch emptyDir reached the host directory: %v", ents)
	}

	// Created again, container a finds its own scratch empty, the pod's
	// emptyDir as it was.
	e.ForceDelete(a, aPID)
	aPID, aOut = e.CreateStarted(a, e.Bundle("sa2", nil, member(`
echo "data-again=$(ls /data)"
echo "shared-again=$(cat /scratch/shared)"
echo started; `+termLoop)), "started")
	kv = e2e.KeyValues(e.WaitOutput(aOut, "started"))
	e2e.WantKVs(t, kv, map[string]string{"data-again": "", "shared-again": "from-a"})

	img := filepath.Join(e.Root, sb, "scratch.img")
	if _, err := os.Stat(img); err != nil {
		t.Errorf("no scratch disk file in the sandbox's state directory: %v", err)
	}
	e.ForceDelete(a, aPID)
	e.ForceDelete(b, bPID)
	e.ForceDelete(sb, sbPID)
	e.AssertNoStateDir(sb, "delete --force")
	e.AssertNoLeaks()
}

// From the pool: a pooled VM's disk (made and formatted by its filler at
// the configured size) becomes the sandbox's; a sandbox asking another
// size is restored from the template instead, with a disk of its size.
// Nothing is left of either after delete.
func TestScratchPool(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	cfg, _, _ := startPool(e, 1)
	script := fsType + `
echo "fs-data=$(fstype /data)"
echo "size=$(df -m /data | tail -n1 | tr -s ' ' | cut -d' ' -f2)"
echo "write=$(echo x > /data/f && cat /data/f)"`
	for _, c := range []struct {
		name, size, from string
		minMiB, maxMiB   int
	}{
		{"pooled", "", "VM taken from the pool", 9000, 10240},
		{"sized", "128M", "VM restored from template", 100, 128},
	} {
		b := e.Bundle(c.name, e2e.Sh(script), func(s *specs.Spec) {
			s.Annotations = map[string]string{"io.skiff.scratch": "/data"}
			if c.size != "" {
				s.Annotations["io.skiff.scratch.size"] = c.size
			}
		})
		r, log := runWithLog(e, cfg, b, e.ID(c.name))
		e.MustOK(r)
		if e2e.LogLine(log, c.from) == nil {
			l, _ := os.ReadFile(log)
			t.Errorf("%s: no %q in the log:\n%s", c.name, c.from, l)
		}
		kv := e2e.KeyValues(r.Stdout)
		e2e.WantKVs(t, kv, map[string]string{"fs-data": "ext4", "write": "x"})
		var mib int
		if _, err := fmt.Sscan(kv["size"], &mib); err != nil || mib < c.minMiB || mib > c.maxMiB {
			t.Errorf("%s: the scratch disk has %q MiB, want %d to %d", c.name, kv["size"], c.minMiB, c.maxMiB)
		}
	}
	// The refill's waiting VM goes with the pool.
	e.MustOK(e.RT("--config", cfg, "factory", "destroy"))
	e.AssertNoLeaks()
}
