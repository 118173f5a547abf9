package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// HostCgroupDir is where a cgroup path lives on this host: the unified
// hierarchy on cgroup v2, the memory controller's on v1 (and hybrid).
func HostCgroupDir(t *testing.T, rel string) string {
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

// CgroupProcs lists the PIDs in the host cgroup directory dir.
func CgroupProcs(t *testing.T, dir string) []int {
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

// ProcCgroupDir is the host cgroup directory of process pid for a
// controller ("pids", "cpu", "cpuset"), read from /proc/PID/cgroup as
// the OCI validation programs do: the unified hierarchy's on cgroup v2,
// that controller's hierarchy on v1 (and hybrid).
func ProcCgroupDir(t *testing.T, pid int, controller string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatalf("cgroups of %d: %v", pid, err)
	}
	var st unix.Statfs_t
	unified := unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		if unified && f[0] == "0" {
			return filepath.Join("/sys/fs/cgroup", f[2])
		}
		for _, c := range strings.Split(f[1], ",") {
			if !unified && c == controller {
				return filepath.Join("/sys/fs/cgroup", controller, f[2])
			}
		}
	}
	t.Fatalf("process %d is in no %s cgroup:\n%s", pid, controller, b)
	return ""
}

// CgroupValue reads one file of a host cgroup directory, trimmed.
func CgroupValue(t *testing.T, dir, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Errorf("host cgroup: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// CgroupV2 tells whether this host has the unified hierarchy alone.
func CgroupV2() bool {
	var st unix.Statfs_t
	return unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}
