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

// nestedRootfs is the Debian rootfs with podman, buildah and crun that
// scripts/nested-rootfs.sh makes (once; cached between runs).
func nestedRootfs(t *testing.T) string {
	t.Helper()
	const dest = "/var/cache/skiff-test/bookworm-build"
	script, err := filepath.Abs("../scripts/nested-rootfs.sh") // go test runs in tests/
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(script, dest).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return dest
}

// The CI users' workload: a privileged pipeline step builds an image and
// runs it, inside the sandbox. buildah builds FROM scratch with a COPY of
// a static busybox, and podman runs the image, both with the kernel's
// overlay storage driver on /var/lib/containers (under skiff a guest-local
// scratch disk, by default for a privileged container; under runc a host
// directory) and cgroups of their own (crun), as podman --privileged
// mounts /sys/fs/cgroup writable. The same test passes with runc.
func TestNestedBuildAndRun(t *testing.T) {
	e := e2e.NewEnv(t)
	rootfs := nestedRootfs(t)
	storage := e.Mkdir("var-lib-containers")
	script := `set -e
mkdir -p /tmp/ctx
cp /bin/busybox /tmp/ctx/busybox
printf 'FROM scratch\nCOPY busybox /bin/busybox\nCMD ["/bin/busybox", "echo", "hello from the nested container"]\n' >/tmp/ctx/Containerfile
buildah --storage-driver overlay bud --isolation chroot -t localhost/nested:1 /tmp/ctx >/tmp/build.log 2>&1 || { tail -n 20 /tmp/build.log; exit 1; }
echo built=yes
echo driver=$(podman --storage-driver overlay info --format '{{.Store.GraphDriverName}}')
podman --storage-driver overlay run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 localhost/nested:1
`
	tmpfs := func(dst string) specs.Mount {
		return specs.Mount{Destination: dst, Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "mode=755"}}
	}
	b := e.Bundle("nested", e2e.Sh(script), e2e.Privileged,
		e2e.Mounts(tmpfs("/tmp"), tmpfs("/run"), tmpfs("/var/tmp"), tmpfs("/root"), tmpfs("/etc/containers/networks"),
			e2e.Bind("/var/lib/containers", storage, "rbind", "rw")),
		func(s *specs.Spec) {
			s.Root = &specs.Root{Path: rootfs, Readonly: true}
			s.Process.Env = append(s.Process.Env, "HOME=/root")
			// As podman --privileged: every device allowed, sysfs and
			// the cgroup tree writable.
			if s.Linux.Resources == nil {
				s.Linux.Resources = &specs.LinuxResources{}
			}
			s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
			for i, m := range s.Mounts {
				if m.Destination == "/sys" || m.Destination == "/sys/fs/cgroup" {
					var opts []string
					for _, o := range m.Options {
						if o != "ro" {
							opts = append(opts, o)
						}
					}
					s.Mounts[i].Options = append(opts, "rw")
				}
			}
		})
	r := e.RT("run", "--bundle", b, e.ID("nested"))
	if r.Code != 0 || !strings.Contains(r.Stdout, "hello from the nested container") {
		t.Fatalf("the nested build and run failed: %v", r)
	}
	kv := e2e.KeyValues(r.Stdout)
	e2e.WantKV(t, kv, "built", "yes")
	e2e.WantKV(t, kv, "driver", "overlay")
	if e2e.IsSkiff() {
		// The layers were on the guest's scratch disk, not in the
		// host directory the spec named.
		if ents, _ := os.ReadDir(storage); len(ents) > 0 {
			t.Errorf("the image store reached the host directory %s: %v", storage, ents)
		}
	}
}
