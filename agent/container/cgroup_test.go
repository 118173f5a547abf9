package container

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestDelegates(t *testing.T) {
	cg := func(typ string, opts ...string) []specs.Mount {
		return []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/sys/fs/cgroup", Type: typ, Source: "cgroup", Options: opts},
		}
	}
	for _, tc := range []struct {
		name   string
		mounts []specs.Mount
		want   bool
	}{
		{"podman, not privileged", cg("cgroup", "rprivate", "nosuid", "noexec", "nodev", "relatime", "ro"), false},
		{"podman --privileged", cg("cgroup", "rprivate", "nosuid", "noexec", "nodev", "relatime", "rw"), true},
		{"cgroup2 without options", cg("cgroup2"), true},
		{"ro then rw", cg("cgroup2", "ro", "rw"), true},
		{"no cgroup mount", []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}}, false},
		{"a tmpfs there is not a cgroup", []specs.Mount{{Destination: "/sys/fs/cgroup", Type: "tmpfs"}}, false},
	} {
		if got := delegates(&specs.Spec{Mounts: tc.mounts}); got != tc.want {
			t.Errorf("%s: delegates = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestUnifiedPath(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"0::/skiff/c1/init\n", "/skiff/c1/init", true},
		{"0::/\n", "/", true},
		{"9:name=systemd:/x\n4:memory:/x\n0::/x\n", "/x", true},
		{"4:memory:/x\n", "", false},
		{"", "", false},
	} {
		got, ok := unifiedPath(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("unifiedPath(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// A container's processes are found below its cgroup too (its init's
// leaf, a nested runtime's cgroups), and its cgroup goes deepest first.
func TestCgroupTree(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c1")
	for p, procs := range map[string]string{
		"":         "",
		"init":     "1\n7\n",
		"a":        "",
		"a/b":      "12\n",
		"a/b/deep": "13\n",
	} {
		must(t, os.MkdirAll(filepath.Join(dir, p), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, p, "cgroup.procs"), []byte(procs), 0o644))
	}
	pids, err := cgroupPIDs(dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(pids)
	if want := []int{1, 7, 12, 13}; !slices.Equal(pids, want) {
		t.Errorf("cgroupPIDs = %v, want %v", pids, want)
	}
	if _, err := cgroupPIDs(filepath.Join(dir, "missing")); err == nil {
		t.Error("cgroupPIDs of a missing cgroup: no error")
	}

	// A cgroupfs directory goes with rmdir while its files are there; a
	// plain one must be emptied first.
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			os.Remove(p)
		}
		return nil
	})
	if !removeCgroupTree(dir) {
		t.Error("removeCgroupTree reported a failure")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s is still there: %v", dir, err)
	}
	if !removeCgroupTree(dir) {
		t.Error("removeCgroupTree of a cgroup already gone must report it gone")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
