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
