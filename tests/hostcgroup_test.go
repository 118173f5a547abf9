package tests

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// hostCgroupDir is where a cgroup path lives on this host: the unified
// hierarchy on cgroup v2, the memory controller's on v1 (and hybrid).
func hostCgroupDir(t *testing.T, rel string) string {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		t.Fatalf("no cgroups on this host: %v", err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return filepath.Join("/sys/fs/cgroup", rel)
	}
	return filepath.Join("/sys/fs/cgroup/memory", rel)
}

func cgroupProcs(t *testing.T, dir string) []int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		t.Fatalf("host cgroup: %v", err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

func hasPID(pids []int, pid int) bool {
	for _, p := range pids {
		if p == pid {
			return true
		}
	}
	return false
}

// The VM's processes (shim and QEMU) live in the host cgroup that
// linux.cgroupsPath names, capped at the VM's memory plus a margin when the
// container has a memory limit; delete removes the cgroup.
func TestHostCgroup(t *testing.T) {
	skiffOnly(t) // qemu.pid in the state directory
	t.Parallel()
	e := newEnv(t)
	for _, c := range []struct {
		name, path, rel string
		limit           int64
	}{
		{"plain", "/skiff-test-%d", "/skiff-test-%d", 64 << 20},
		{"systemd", "skiff-test.slice:skiffx:%d", "/skiff.slice/skiff-test.slice/skiffx-%d.scope", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := e.id("hcg-" + c.name)
			path := strings.ReplaceAll(c.path, "%d", strconv.FormatInt(e.num, 10))
			rel := strings.ReplaceAll(c.rel, "%d", strconv.FormatInt(e.num, 10))
			dir := hostCgroupDir(t, rel)
			b := e.bundle("hcg-"+c.name, []string{"sleep", "1000"}, func(s *specs.Spec) {
				s.Linux.CgroupsPath = path
				if c.limit > 0 {
					if s.Linux.Resources == nil {
						s.Linux.Resources = &specs.LinuxResources{}
					}
					s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &c.limit}
				}
			})
			shim, _ := e.create(id, b)
			qb, err := os.ReadFile(filepath.Join(e.root, id, "qemu.pid"))
			if err != nil {
				t.Fatalf("no qemu.pid: %v", err)
			}
			qemu, _ := strconv.Atoi(strings.TrimSpace(string(qb)))
			procs := cgroupProcs(t, dir)
			if !hasPID(procs, qemu) || !hasPID(procs, shim) {
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
			e.mustOK(e.rt("start", id))
			e.mustOK(e.rt("kill", id, "KILL"))
			e.waitStatus(id, "stopped")
			e.mustOK(e.rt("delete", id))
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("host cgroup %s still there after delete (%v)", dir, err)
			}
		})
	}
	// The systemd form's slices were made by skiff, and went with it.
	if _, err := os.Stat(hostCgroupDir(t, "/skiff.slice/skiff-test.slice")); err == nil {
		t.Errorf("slice directories left after delete")
		os.Remove(hostCgroupDir(t, "/skiff.slice/skiff-test.slice"))
		os.Remove(hostCgroupDir(t, "/skiff.slice"))
	}

	// The root cgroup is refused before anything is made.
	b := e.bundle("hcg-root", []string{"true"}, func(s *specs.Spec) { s.Linux.CgroupsPath = "/" })
	r, _ := e.rtFiles("create", "--bundle", b, e.id("hcg-root"))
	if msg := e.mustFail(r); !strings.Contains(msg, "cgroupsPath") {
		t.Errorf("create with cgroupsPath / says %q, want it to name linux.cgroupsPath", msg)
	}
}
