package hostcgroup

import (
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
