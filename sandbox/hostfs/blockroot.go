package hostfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agentclient/protocol"
	"github.com/skiff-oci/skiff/hypervisor"
	"github.com/skiff-oci/skiff/internal/fspath"
	"github.com/skiff-oci/skiff/internal/mountinfo"
)

// A rootfs that is a whole filesystem on a block device (a thin device of
// containerd's devmapper snapshotter, a loop-mounted image) reaches the
// guest as a virtio-blk disk instead of through a share: the guest's own
// ext4 driver, no file server, no round trip per file operation. The
// host's mount of it is taken over: unmounted before the VM starts, since
// two kernels must never mount one filesystem at once, and never mounted
// again by skiff (its content is then the guest's: no host kernel code
// parses it on skiff's behalf). The caller's unmount at delete (containerd's
// runc shim does one) finds nothing mounted, which it accepts.

// RootDiskSerial is the serial a block rootfs has in the guest.
const RootDiskSerial = "skiff-rootfs"

// rootDiskID names it on QEMU's command line.
const rootDiskID = "rootdisk"

// blockRoot is a rootfs mounted from a block device.
type blockRoot struct {
	device string // the device node, from the mount's source
	fsType string
	point  string // where it is mounted on the host
}

// findBlockRoot tells whether rootfs is the mount point of the whole
// filesystem of a block device the guest can mount, mounted nowhere else
// in this mount namespace and with nothing mounted below it. Anything
// else (a directory, an overlay, a bind of part of a filesystem) is
// shared as usual: nil, nil.
func findBlockRoot(rootfs string) (*blockRoot, error) {
	mounts, err := mountinfo.Read()
	if err != nil {
		return nil, err
	}
	return blockRootIn(mounts, fspath.Canonical(rootfs), statBlock), nil
}

// statBlock returns the device number of the block device at path.
func statBlock(path string) (uint64, bool) {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, false
	}
	return st.Rdev, true
}

func blockRootIn(mounts []mountinfo.Mount, point string, stat func(string) (uint64, bool)) *blockRoot {
	var m *mountinfo.Mount
	for i := range mounts {
		if mounts[i].Point == point {
			m = &mounts[i] // the last mount on it is the one seen
		}
	}
	if m == nil || m.Root != "/" || !protocol.DiskFS(m.FSType) || !strings.HasPrefix(m.Source, "/dev/") {
		return nil
	}
	rdev, ok := stat(m.Source)
	if !ok || fmt.Sprintf("%d:%d", unix.Major(rdev), unix.Minor(rdev)) != m.Dev {
		return nil
	}
	for _, o := range mounts {
		if o.ID != m.ID && (o.Dev == m.Dev || strings.HasPrefix(o.Point, point+"/")) {
			return nil
		}
	}
	return &blockRoot{device: m.Source, fsType: m.FSType, point: point}
}

// disk is the VM's disk of the rootfs.
func (r *blockRoot) disk(readOnly bool) hypervisor.Disk {
	return hypervisor.Disk{ID: rootDiskID, Path: r.device, Serial: RootDiskSerial, Block: true, ReadOnly: readOnly}
}

// UseRootDisk gives the VM the rootfs of the plan's bundle (whose rootfs
// directory is rootfs) as a disk instead of a share, if it is a block
// device's filesystem (findBlockRoot); otherwise the plan is unchanged.
// It touches nothing: TakeOverRootDisk does, before the VM starts.
func (p *Plan) UseRootDisk(rootfs string) error {
	br, err := findBlockRoot(rootfs)
	if err != nil || br == nil {
		return err
	}
	i := slices.IndexFunc(p.Host, func(s hypervisor.Share) bool { return s.Tag == "rootfs" })
	j := slices.IndexFunc(p.Guest, func(s protocol.Share) bool { return s.Tag == "rootfs" })
	if i < 0 || j < 0 {
		return nil // a pod container's rootfs: it is in the pod's share
	}
	ro := p.Host[i].ReadOnly
	p.Host = slices.Delete(p.Host, i, i+1)
	guest := filepath.Join(GuestShareDir, rootDiskID)
	p.Guest[j] = protocol.Share{Tag: RootDiskSerial, GuestPath: guest, ReadOnly: ro, FSType: br.fsType}
	root := *p.Spec.Root
	root.Path = guest
	p.Spec.Root = &root
	p.Disks = []hypervisor.Disk{br.disk(ro)}
	p.blockRoot = br
	return nil
}

// UsePodRootDisk is UseRootDisk for a pod's container (PlanPodContainer),
// whose rootfs would otherwise be bound into the pod's share: as a disk
// it is plugged into the running VM's hot-plug slot slot, whose number
// names it.
func (p *Plan) UsePodRootDisk(rootfs string, slot int) error {
	br, err := findBlockRoot(rootfs)
	if err != nil || br == nil {
		return err
	}
	i := slices.IndexFunc(p.binds, func(b hostBind) bool { return b.dir && b.source == rootfs })
	if i < 0 {
		return nil
	}
	ro := p.binds[i].readOnly
	p.binds = slices.Delete(p.binds, i, i+1)
	d := br.disk(ro)
	d.ID, d.Serial = fmt.Sprintf("%s%d", rootDiskID, slot), fmt.Sprintf("%s-%d", RootDiskSerial, slot)
	guest := filepath.Join(GuestShareDir, d.ID)
	p.Guest = append(p.Guest, protocol.Share{Tag: d.Serial, GuestPath: guest, ReadOnly: ro, FSType: br.fsType})
	root := *p.Spec.Root
	root.Path = guest
	p.Spec.Root = &root
	p.Disks = []hypervisor.Disk{d}
	p.blockRoot = br
	return nil
}

// TakeOverRootDisk unmounts the host's mount of a block rootfs, so that
// the guest alone mounts the filesystem; a plan without one is nothing to
// do. A busy mount (a process has files open in it) is an error: sharing
// it while the guest mounts it would corrupt it. The device is held open
// across the unmount until release is called, once the VM holds it: a
// loop device mounted with -o loop (autoclear) would otherwise be
// detached by the unmount, leaving the VM an empty disk.
func (p *Plan) TakeOverRootDisk() (release func(), err error) {
	if p.blockRoot == nil {
		return func() {}, nil
	}
	hold, err := os.Open(p.blockRoot.device)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	if err := unix.Unmount(p.blockRoot.point, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		hold.Close()
		return nil, fmt.Errorf("rootfs: take over %s from its mount on %s: %w (set storage.rootfs_disk = false to share it instead)",
			p.blockRoot.device, p.blockRoot.point, err)
	}
	return func() { hold.Close() }, nil
}
