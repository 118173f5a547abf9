package tests

import (
	"os"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// The container's own cgroup view (podman's --cgroupns): what a container
// finds at /sys/fs/cgroup and in /proc/self/cgroup. Under skiff the
// guest has cgroup v2 alone, whatever the host has; runc shows the host's
// version, so the expectations under runc follow the host: on a cgroup v1
// (or hybrid) host its files are v1's, with the same values.
//
// Every podman run here sets its rlimits (podmanLimits): podman's
// defaults (and --ulimit host) raise RLIMIT_NOFILE and RLIMIT_NPROC to
// 1048576, above what a runtime may set on some hosts (this one), where
// runc then fails before any cgroup is looked at.
var podmanLimits = []string{"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}

// podmanRun is `podman run` with podmanLimits, then args.
func podmanRun(args ...string) []string {
	return append(append([]string{"run"}, podmanLimits...), args...)
}

// cgroupProbe prints, as key=value lines, the cgroup version the
// container sees (v2=yes|no), its own cgroup path(s) (self=, every line
// of /proc/self/cgroup joined by ','), and the limits as the files below
// $1 (a directory of the view, relative to /sys/fs/cgroup; "" its root)
// hold them: mem=, cpu= ("quota period"), pids=.
const cgroupProbe = `d=/sys/fs/cgroup$1
echo self=$(paste -sd, /proc/self/cgroup)
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
	echo v2=yes
	echo mem=$(cat $d/memory.max 2>&1)
	echo cpu=$(cat $d/cpu.max 2>&1)
	echo pids=$(cat $d/pids.max 2>&1)
	echo rootmem=$(cat /sys/fs/cgroup/memory.max 2>&1 | sed 's/.*No such file.*/absent/')
else
	echo v2=no
	echo mem=$(cat /sys/fs/cgroup/memory$1/memory.limit_in_bytes 2>&1)
	echo cpu=$(cat /sys/fs/cgroup/cpu$1/cpu.cfs_quota_us 2>&1) $(cat /sys/fs/cgroup/cpu$1/cpu.cfs_period_us 2>&1)
	echo pids=$(cat /sys/fs/cgroup/pids$1/pids.max 2>&1)
fi`

// hostCgroupV2 is whether the host mounts the unified hierarchy alone at
// /sys/fs/cgroup, as runc's containers then see it.
func hostCgroupV2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// wantV2 is the cgroup version a container sees: v2 in skiff's guest,
// the host's under runc.
func wantV2(t *testing.T) string {
	if e2e.IsSkiff() || hostCgroupV2() {
		return "yes"
	}
	return "no"
}

// limitArgs are the limits every test here sets, and what the files show.
var limitArgs = []string{"--memory", "128m", "--cpus", "1", "--pids-limit", "50"}

func wantLimits(v2 string) map[string]string {
	return map[string]string{"v2": v2, "mem": "134217728", "cpu": "100000 100000", "pids": "50"}
}

// With a cgroup namespace (--cgroupns=private) the container's cgroup is
// the root of its view: its limits are at /sys/fs/cgroup, for its init
// and for a process podman exec starts, and /proc/self/cgroup says "/".
func TestPodmanCgroupViewPrivate(t *testing.T) {
	t.Parallel()
	root := e2e.PodmanRootfs(t)
	name := e2e.PodmanName(t, "cgpriv")
	args := append(podmanRun("-d", "--name", name, "--cgroupns=private"), limitArgs...)
	args = append(args, "--rootfs", root, "/bin/sh", "-c", cgroupProbe+"\necho probed=yes; while true; do sleep 1; done", "probe", "")
	e2e.PodmanOK(t, args...)
	var logs string
	e2e.WaitFor(t, func() bool {
		logs = e2e.Podman(t, nil, "logs", name).Stdout
		return strings.Contains(logs, "probed=yes")
	}, "the container's probe output in podman logs")
	v2 := wantV2(t)
	for who, out := range map[string]string{
		"init": logs,
		"exec": e2e.PodmanOK(t, "exec", name, "/bin/sh", "-c", cgroupProbe, "probe", "").Stdout,
	} {
		t.Run(who, func(t *testing.T) {
			kv := e2e.KeyValues(out)
			e2e.WantKVs(t, kv, wantLimits(v2))
			// Every hierarchy's line ends in "/": v2's "0::/", and
			// under runc on a v1 host each controller's too.
			for _, line := range strings.Split(kv["self"], ",") {
				if !strings.HasSuffix(line, ":/") {
					t.Errorf("/proc/self/cgroup has %q, want the namespace's root %q (all: %s)", line, "/", kv["self"])
				}
			}
			if e2e.IsSkiff() {
				e2e.WantKV(t, kv, "self", "0::/")
			}
		})
	}
}

// Without one (--cgroupns=host) the container keeps podman's meaning:
// its cgroup is a path below the root of the hierarchy it sees, a path
// that names the container. Under skiff that hierarchy is the guest's
// (the container's "host" inside the VM), whose root holds no limits.
func TestPodmanCgroupViewHost(t *testing.T) {
	t.Parallel()
	root := e2e.PodmanRootfs(t)
	name := e2e.PodmanName(t, "cghost")
	// v2: the limits are in the directory /proc/self/cgroup names,
	// below the root of the view. v1 (runc on a v1 host): runc mounts
	// each controller's hierarchy at the container's own cgroup, so the
	// limits are at the top of each.
	script := `sub=
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then sub=$(sed -n 's/^0:://p' /proc/self/cgroup); fi
set -- "$sub"
` + cgroupProbe
	args := append(podmanRun("--name", name, "--cgroupns=host"), limitArgs...)
	args = append(args, "--rootfs", root, "/bin/sh", "-c", script)
	r := e2e.PodmanOK(t, args...)
	kv := e2e.KeyValues(r.Stdout)
	v2 := wantV2(t)
	e2e.WantKVs(t, kv, wantLimits(v2))
	id := strings.TrimSpace(e2e.PodmanOK(t, "inspect", "--format", "{{.Id}}", name).Stdout)
	for _, line := range strings.Split(kv["self"], ",") {
		if !strings.Contains(line, id) {
			t.Errorf("/proc/self/cgroup has %q, want a path naming container %s (all: %s)", line, id, kv["self"])
		}
	}
	if v2 == "yes" {
		e2e.WantKV(t, kv, "rootmem", "absent") // the root of a v2 hierarchy has no memory.max
	}
	if e2e.IsSkiff() {
		// The guest's layout: one cgroup per container below /skiff.
		e2e.WantKV(t, kv, "self", "0::/skiff/"+id)
	}
}

// A privileged container with a cgroup namespace manages its own
// cgroup: it makes a child cgroup, gives it a limit of its own and moves
// a process into it, as a runtime nested in it does. Under skiff the
// container's cgroup has its controllers enabled for its children and
// the container's processes live in its leaf /init (a cgroup that gives
// controllers to its children can hold no process).
func TestPodmanCgroupDelegated(t *testing.T) {
	t.Parallel()
	root := e2e.PodmanRootfs(t)
	// v1 (runc on a v1 host): the memory hierarchy is where a memory
	// limit is made.
	script := `if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
	d=/sys/fs/cgroup; lim=memory.max; line='^0::'; echo v2=yes
	echo subtree=$(cat $d/cgroup.subtree_control)
else
	d=/sys/fs/cgroup/memory; lim=memory.limit_in_bytes; line=':memory:'; echo v2=no
fi
echo init=$(paste -sd, /proc/self/cgroup)
mkdir $d/child && echo mkdir=ok
if echo 67108864 > $d/child/$lim; then echo limit=$(cat $d/child/$lim); else echo limit=refused; fi
sh -c "echo \$\$ > $d/child/cgroup.procs && grep '$line' /proc/self/cgroup | sed 's/^[^:]*:[^:]*:/moved=/'"
rmdir $d/child && echo rmdir=ok`
	r := e2e.PodmanOK(t, podmanRun("--rm", "--privileged", "--cgroupns=private", "--memory", "128m",
		"--rootfs", root, "/bin/sh", "-c", script)...)
	kv := e2e.KeyValues(r.Stdout)
	want := map[string]string{"v2": wantV2(t), "mkdir": "ok", "moved": "/child", "rmdir": "ok", "limit": "67108864"}
	if !e2e.IsSkiff() && hostCgroupV2() {
		// runc delegates nothing: the container's processes sit in its
		// cgroup, which therefore cannot enable controllers for a child.
		want["limit"] = "refused"
	}
	e2e.WantKVs(t, kv, want)
	if e2e.IsSkiff() {
		e2e.WantKVs(t, kv, map[string]string{"init": "0::/init", "subtree": "cpu memory pids"})
	}
	if t.Failed() {
		t.Logf("container output:\n%s%s", r.Stdout, r.Stderr)
	}
}

// A bundle as `spec` makes it (with a cgroup namespace) and the spec's
// limits: the container reads them at the root of its view. Without the
// namespace, under skiff, the root of the view is the guest's.
func TestCgroupViewBundle(t *testing.T) {
	e := e2e.NewEnv(t)
	limits := func(s *specs.Spec) {
		mem, quota, period, pids := int64(128<<20), int64(100000), uint64(100000), int64(50)
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &mem}
		s.Linux.Resources.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
		s.Linux.Resources.Pids = &specs.LinuxPids{Limit: &pids}
	}
	probe := append(e2e.Sh(cgroupProbe), "probe", "")
	b := e.Bundle("own", probe, limits)
	kv := e2e.KeyValues(e.MustOK(e.RT("run", "--bundle", b, e.ID("own"))).Stdout)
	e2e.WantKVs(t, kv, wantLimits(wantV2(t)))
	if e2e.IsSkiff() {
		e2e.WantKV(t, kv, "self", "0::/")
	}

	e.Step("no cgroup namespace", func(e *e2e.Env) {
		e2e.SkiffOnly(e.T) // runc's view of the host's tree differs by host and version
		b := e.Bundle("guest", probe, limits, e2e.WithoutNamespace(specs.CgroupNamespace))
		id := e.ID("guest")
		kv := e2e.KeyValues(e.MustOK(e.RT("run", "--bundle", b, id)).Stdout)
		e2e.WantKVs(e.T, kv, map[string]string{"self": "0::/skiff/" + id, "rootmem": "absent"})
	})
}

// /dev/fuse opens in a privileged container (podman lists it among the
// host's devices; skiff's guest has the fuse driver); a container that
// is not privileged has only the devices its spec lists, and no fuse.
func TestPodmanDevFuse(t *testing.T) {
	t.Parallel()
	root := e2e.PodmanRootfs(t)
	script := `if [ ! -e /dev/fuse ]; then echo fuse=absent; elif exec 3<>/dev/fuse; then echo fuse=open; else echo fuse=unopenable; fi`
	r := e2e.PodmanOK(t, podmanRun("--rm", "--privileged", "--rootfs", root, "/bin/sh", "-c", script)...)
	e2e.WantKV(t, e2e.KeyValues(r.Stdout), "fuse", "open")
	r = e2e.PodmanOK(t, podmanRun("--rm", "--rootfs", root, "/bin/sh", "-c", script)...)
	e2e.WantKV(t, e2e.KeyValues(r.Stdout), "fuse", "absent")
}
