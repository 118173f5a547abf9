package hostcgroup

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestHostCgroupPath(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"/libpod_parent/libpod-abc", "/libpod_parent/libpod-abc"},
		{"relative/x", "/relative/x"},
		{"/a/../../b", "/b"},
		{"machine.slice:libpod:abc", "/machine.slice/libpod-abc.scope"},
		{"kubepods-besteffort-pod1.slice:cri-containerd:abc", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope"},
		{":skiff:abc", "/system.slice/skiff-abc.scope"},
		{"user.slice::abc", "/user.slice/abc.scope"},
		{"-.slice:p:abc", "/p-abc.scope"},
	} {
		got, err := Path(&specs.Spec{Linux: &specs.Linux{CgroupsPath: c.in}})
		if err != nil || got != c.want {
			t.Errorf("Path(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"/", "/..", "bad-.slice:p:x", "machine:p:x", "machine.slice:p:", "machine.slice:p:a/b"} {
		if got, err := Path(&specs.Spec{Linux: &specs.Linux{CgroupsPath: bad}}); err == nil {
			t.Errorf("Path(%q) = %q, want an error", bad, got)
		}
	}
	if got, err := Path(&specs.Spec{}); got != "" || err != nil {
		t.Errorf("no linux section: %q, %v", got, err)
	}
}

func TestLimitSettings(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	r := &specs.LinuxResources{
		Pids: &specs.LinuxPids{Limit: i64(1000)},
		CPU:  &specs.LinuxCPU{Shares: u64(2048), Quota: i64(50000), Period: u64(500000), Cpus: "0", Mems: "0"},
	}
	want := []setting{{"pids.max", "1000"}, {"cpuset.mems", "0"}, {"cpuset.cpus", "0"}}
	if got := joinSettings(r); !slices.Equal(got, want) {
		t.Errorf("joinSettings = %v, want %v", got, want)
	}
	want = []setting{{"cpu.shares", "2048"}, {"cpu.cfs_period_us", "500000"}, {"cpu.cfs_quota_us", "50000"}}
	if got := cpuSettings(r, false); !slices.Equal(got, want) {
		t.Errorf("cpuSettings v1 = %v, want %v", got, want)
	}
	want = []setting{{"cpu.weight", "79"}, {"cpu.max", "50000 500000"}}
	if got := cpuSettings(r, true); !slices.Equal(got, want) {
		t.Errorf("cpuSettings v2 = %v, want %v", got, want)
	}

	// The VM's own threads need room whatever the container's limit; no
	// limit is "max".
	for _, c := range []struct {
		limit int64
		want  string
	}{{10, "128"}, {128, "128"}, {4096, "4096"}, {-1, "max"}, {0, "max"}} {
		got := joinSettings(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(c.limit)}})
		if len(got) != 1 || got[0] != (setting{"pids.max", c.want}) {
			t.Errorf("pids limit %d: %v, want pids.max %s", c.limit, got, c.want)
		}
	}
	for _, c := range []struct {
		quota  *int64
		period *uint64
		want   string
	}{{nil, nil, ""}, {i64(20000), nil, "20000 100000"}, {i64(-1), u64(50000), "max 50000"}, {nil, u64(50000), "max 50000"}} {
		if got := cpuMax(c.quota, c.period); got != c.want {
			t.Errorf("cpuMax(%v, %v) = %q, want %q", c.quota, c.period, got, c.want)
		}
	}
	for shares, weight := range map[uint64]uint64{2: 1, 1024: 39, 262144: 10000, 1: 1, 1 << 20: 10000} {
		if got := sharesToWeight(shares); got != weight {
			t.Errorf("sharesToWeight(%d) = %d, want %d", shares, got, weight)
		}
	}
	if got := joinSettings(nil); got != nil {
		t.Errorf("no resources: %v", got)
	}
}

// write skips the files a hierarchy lacks (another controller's) and
// reports those the kernel refuses.
func TestWriteSettings(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "pids.max"), []byte("max\n"), 0o644)
	if err := write(dir, []setting{{"cpu.shares", "2"}, {"pids.max", "200"}}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "pids.max")); string(b) != "200" {
		t.Errorf("pids.max = %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "cpu.shares")); err == nil {
		t.Errorf("cpu.shares made in a hierarchy that has none")
	}
	os.Mkdir(filepath.Join(dir, "cpuset.cpus"), 0o755) // unwritable as a file
	if err := write(dir, []setting{{"cpuset.cpus", "7"}}); err == nil || !strings.Contains(err.Error(), "cpuset.cpus") {
		t.Errorf("a refused write says %v, want an error naming the file", err)
	}
}

// A new cgroup v1 cpuset, and each new directory above it, get their
// parent's CPUs and memory nodes; one that has some keeps them.
func TestInitCpuset(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"cpuset.cpus": "0-3", "cpuset.mems": "0",
		"a/cpuset.cpus": "1", "a/cpuset.mems": "",
		"a/b/cpuset.cpus": "", "a/b/cpuset.mems": "",
		"a/b/c/cpuset.cpus": "", "a/b/c/cpuset.mems": "",
	}
	for f, v := range files {
		os.MkdirAll(filepath.Join(root, filepath.Dir(f)), 0o755)
		os.WriteFile(filepath.Join(root, f), []byte(v), 0o644)
	}
	if err := initCpuset(root, filepath.Join(root, "a/b/c")); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{"a/cpuset.cpus": "1", "a/cpuset.mems": "0", "a/b/cpuset.cpus": "1", "a/b/c/cpuset.cpus": "1", "a/b/c/cpuset.mems": "0"} {
		if b, _ := os.ReadFile(filepath.Join(root, f)); strings.TrimSpace(string(b)) != want {
			t.Errorf("%s = %q, want %q", f, b, want)
		}
	}
}
