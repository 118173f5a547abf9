package tests

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// The VM's processes (shim and QEMU) live in the host cgroup that
// linux.cgroupsPath names, capped at the VM's memory plus a margin when the
// container has a memory limit; delete removes the cgroup.
func TestHostCgroup(t *testing.T) {
	e2e.SkiffOnly(t) // qemu.pid in the state directory
	e := e2e.NewEnv(t)
	for _, c := range []struct {
		name, path, rel string
		limit           int64
	}{
		{"plain", "/skiff-test-%d", "/skiff-test-%d", 64 << 20},
		{"systemd", "skiff-test.slice:skiffx:%d", "/skiff.slice/skiff-test.slice/skiffx-%d.scope", 0},
	} {
		e.Step(c.name, func(e *e2e.Env) {
			t := e.T
			id := e.ID("hcg-" + c.name)
			path := strings.ReplaceAll(c.path, "%d", strconv.FormatInt(e.Num, 10))
			rel := strings.ReplaceAll(c.rel, "%d", strconv.FormatInt(e.Num, 10))
			dir := e2e.HostCgroupDir(t, rel)
			b := e.Bundle("hcg-"+c.name, []string{"sleep", "1000"}, func(s *specs.Spec) {
				s.Linux.CgroupsPath = path
				if c.limit > 0 {
					if s.Linux.Resources == nil {
						s.Linux.Resources = &specs.LinuxResources{}
					}
					s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &c.limit}
				}
			})
			shim, _ := e.Create(id, b)
			qemu := e.QEMUPID(id)
			procs := e2e.CgroupProcs(t, dir)
			if !slices.Contains(procs, qemu) || !slices.Contains(procs, shim) {
				t.Errorf("%s/cgroup.procs = %v, want qemu %d and shim %d", dir, procs, qemu, shim)
			}
			if c.limit > 0 {
				file := "memory.max"
				if _, err := os.Stat(filepath.Join(dir, file)); err != nil {
					file = "memory.limit_in_bytes"
				}
				b, _ := os.ReadFile(filepath.Join(dir, file))
				got, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
				if err != nil || got <= c.limit || got > 4<<30 {
					t.Errorf("host %s = %q, want the VM's memory plus a margin (above %d, not unlimited)", file, b, c.limit)
				}
			}
			e.MustOK(e.RT("start", id))
			e.MustOK(e.RT("kill", id, "KILL"))
			e.WaitStatus(id, "stopped")
			e.MustOK(e.RT("delete", id))
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("host cgroup %s still there after delete (%v)", dir, err)
			}
		})
	}
	// The systemd form's slices were made by skiff, and went with it.
	if _, err := os.Stat(e2e.HostCgroupDir(t, "/skiff.slice/skiff-test.slice")); err == nil {
		t.Errorf("slice directories left after delete")
		os.Remove(e2e.HostCgroupDir(t, "/skiff.slice/skiff-test.slice"))
		os.Remove(e2e.HostCgroupDir(t, "/skiff.slice"))
	}

	// The root cgroup is refused before anything is made.
	b := e.Bundle("hcg-root", []string{"true"}, func(s *specs.Spec) { s.Linux.CgroupsPath = "/" })
	r, _ := e.RTFiles("create", "--bundle", b, e.ID("hcg-root"))
	if msg := e.MustFail(r); !strings.Contains(msg, "cgroupsPath") {
		t.Errorf("create with cgroupsPath / says %q, want it to name linux.cgroupsPath", msg)
	}
}

// The spec's pids, CPU and cpuset limits hold on the host cgroup of the
// container's PID, as runc writes them, for an absolute and a relative
// cgroupsPath (what the OCI validation programs linux_cgroups_pids,
// _cpus and their relative forms read); for skiff that cgroup holds the
// whole VM, QEMU included. delete removes it.
func TestHostCgroupLimits(t *testing.T) {
	e := e2e.NewEnv(t)
	for _, c := range []struct{ name, path string }{
		{"absolute", "/skiff-limits-%d"},
		{"relative", "skiff-limits-rel-%d/c"},
	} {
		e.Step(c.name, func(e *e2e.Env) {
			t := e.T
			id := e.ID("hcl-" + c.name)
			path := strings.ReplaceAll(c.path, "%d", strconv.FormatInt(e.Num, 10))
			pids, shares, quota, period := int64(1000), uint64(2048), int64(50000), uint64(100000)
			b := e.Bundle("hcl-"+c.name, []string{"sleep", "1000"}, func(s *specs.Spec) {
				s.Linux.CgroupsPath = path
				if s.Linux.Resources == nil {
					s.Linux.Resources = &specs.LinuxResources{}
				}
				s.Linux.Resources.Pids = &specs.LinuxPids{Limit: &pids}
				s.Linux.Resources.CPU = &specs.LinuxCPU{Shares: &shares, Quota: &quota, Period: &period, Cpus: "0", Mems: "0"}
			})
			pid, _ := e.Create(id, b)
			dirs := map[string]string{}
			for _, ctl := range []string{"pids", "cpu", "cpuset"} {
				dir := e2e.ProcCgroupDir(t, pid, ctl)
				dirs[ctl] = dir
				// runc takes a relative path from its own cgroup, skiff
				// from the root: both end in it.
				if !strings.HasSuffix(dir, "/"+strings.TrimPrefix(path, "/")) {
					t.Errorf("%s cgroup of the container's PID %d is %s, want it to end in %s", ctl, pid, dir, path)
				}
			}
			want := map[string]map[string]string{
				"pids":   {"pids.max": "1000"},
				"cpuset": {"cpuset.cpus": "0", "cpuset.mems": "0"},
				"cpu":    {"cpu.shares": "2048", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "50000"},
			}
			if e2e.CgroupV2() {
				want["cpu"] = map[string]string{"cpu.weight": "79", "cpu.max": "50000 100000"}
			}
			for ctl, files := range want {
				for f, v := range files {
					if got := e2e.CgroupValue(t, dirs[ctl], f); got != v {
						t.Errorf("host %s/%s = %q, want %q (from the spec)", dirs[ctl], f, got, v)
					}
				}
			}
			if e2e.IsSkiff() {
				qemu := e.QEMUPID(id)
				for ctl, dir := range dirs {
					if got := e2e.ProcCgroupDir(t, qemu, ctl); got != dir {
						t.Errorf("QEMU (%d) is in %s cgroup %s, want the sandbox's %s", qemu, ctl, got, dir)
					}
				}
			}
			e.MustOK(e.RT("delete", "--force", id))
			for _, dir := range dirs {
				if !strings.HasSuffix(dir, "/"+strings.TrimPrefix(path, "/")) {
					continue // reported above; never a host's own cgroup
				}
				if _, err := os.Stat(dir); !os.IsNotExist(err) {
					t.Errorf("host cgroup %s still there after delete (%v)", dir, err)
					os.Remove(dir)
				}
				// runc leaves the relative path's parent; skiff removes
				// the ones it made.
				if c.name == "relative" {
					os.Remove(filepath.Dir(dir))
				}
			}
		})
	}
}
