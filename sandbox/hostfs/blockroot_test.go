package hostfs

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/internal/mountinfo"
)

// Only a rootfs that is the whole filesystem of a block device, mounted
// nowhere else and with nothing below it, becomes a disk: anything else
// would let two kernels mount one filesystem, or lose a mount.
func TestBlockRootIn(t *testing.T) {
	const point = "/b/rootfs"
	loop := mountinfo.Mount{ID: 30, Parent: 1, Dev: "7:0", Root: "/", Point: point, FSType: "ext4", Source: "/dev/loop0"}
	stat := func(p string) (uint64, bool) { return unix.Mkdev(7, 0), p == "/dev/loop0" }
	with := func(edit func(*mountinfo.Mount), more ...mountinfo.Mount) []mountinfo.Mount {
		m := loop
		if edit != nil {
			edit(&m)
		}
		return append([]mountinfo.Mount{{ID: 1, Dev: "8:1", Root: "/", Point: "/", FSType: "ext4", Source: "/dev/sda1"}, m}, more...)
	}
	for _, tc := range []struct {
		name   string
		mounts []mountinfo.Mount
		want   bool
	}{
		{"a loop-mounted ext4", with(nil), true},
		{"a directory of a filesystem, bound", with(func(m *mountinfo.Mount) { m.Root = "/images/x" }), false},
		{"an overlay", with(func(m *mountinfo.Mount) { m.FSType, m.Source, m.Dev = "overlay", "overlay", "0:50" }), false},
		{"xfs, which the guest cannot mount", with(func(m *mountinfo.Mount) { m.FSType = "xfs" }), false},
		{"a source that is not that device", with(func(m *mountinfo.Mount) { m.Dev = "7:1" }), false},
		{"mounted elsewhere too", with(nil, mountinfo.Mount{ID: 31, Dev: "7:0", Root: "/", Point: "/mnt/x", FSType: "ext4", Source: "/dev/loop0"}), false},
		{"a mount below it", with(nil, mountinfo.Mount{ID: 31, Parent: 30, Dev: "0:60", Root: "/", Point: point + "/proc", FSType: "proc", Source: "proc"}), false},
		{"not a mount point", with(func(m *mountinfo.Mount) { m.Point = "/elsewhere" }), false},
	} {
		if got := blockRootIn(tc.mounts, point, stat) != nil; got != tc.want {
			t.Errorf("%s: a disk: %v, want %v", tc.name, got, tc.want)
		}
	}
}
