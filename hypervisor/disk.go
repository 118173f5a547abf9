package hypervisor

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"

	"golang.org/x/sys/unix"
)

// Disk is a raw image file on the host given to the guest as a virtio-blk
// disk. The guest finds it by Serial, never by probe order.
type Disk struct {
	// ID names the drive and the device on QEMU's command line and in
	// QMP; a VM template and its clones use the same.
	ID     string
	Path   string
	Serial string
	// Size is the file's size in bytes, for the factory (a pooled VM's
	// disk must be the size a sandbox asks); QEMU reads the file's.
	Size int64
	// Block: Path is a host block device (a container's rootfs that is
	// one), which the guard opens and hands QEMU as descriptors (a
	// jailed QEMU could not open it). Its writes are kept (the guest's
	// flushes reach the device): it outlives the sandbox.
	Block    bool
	ReadOnly bool
}

// diskIDPattern and diskSerialPattern keep IDs and serials to what needs
// no quoting in QEMU's options; a virtio-blk serial holds 20 bytes.
var (
	diskIDPattern     = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,31}$`)
	diskSerialPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,20}$`)
)

func validateDisks(cfg *Config) error {
	seen := map[string]bool{}
	for i := range cfg.Disks {
		d := &cfg.Disks[i]
		if !diskIDPattern.MatchString(d.ID) || seen[d.ID] {
			return fmt.Errorf("disk ID %q must be unique, a letter then up to 31 of A-Z a-z 0-9 _ -", d.ID)
		}
		seen[d.ID] = true
		if !diskSerialPattern.MatchString(d.Serial) {
			return fmt.Errorf("disk %s: serial %q must be 1-20 characters of A-Z a-z 0-9 _ . -", d.ID, d.Serial)
		}
		if err := absPath("disk "+d.ID, &d.Path); err != nil {
			return err
		}
		if d.Block {
			if fi, err := os.Stat(d.Path); err != nil {
				return fmt.Errorf("disk %s: %w", d.ID, err)
			} else if fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
				return fmt.Errorf("disk %s: %s is not a block device", d.ID, d.Path)
			}
		}
	}
	return nil
}

// diskArgs are the drives and virtio-blk devices of disks, on bus
// ("pci" or "device"); a block device's descriptors are at blockFD on.
// A scratch image is raw: its size on the host is the disk's size, and
// QEMU refuses guest I/O past it, so a guest never makes the file larger
// than the host made it. cache=unsafe for it: a scratch disk lives and
// dies with its sandbox, and nothing reads it after a host crash, so the
// guest's flushes need not reach the host's disk (it is the host's page
// cache that keeps them). Discards are passed on as holes (or unmapped
// blocks of a thin device), so space the guest frees may be given back
// to the host.
func diskArgs(disks []Disk, bus string, blockFD int) []string {
	var a []string
	for i, d := range disks {
		drive := "if=none,id=" + d.ID + ",file=" + optValue(d.Path) + ",format=raw,cache=unsafe,discard=unmap"
		if d.Block {
			set := strconv.Itoa(blockFDSet + i)
			a = append(a, "-add-fd", "fd="+strconv.Itoa(blockFD)+",set="+set)
			blockFD++
			if !d.ReadOnly {
				// QEMU opens the device read-only first, then
				// read-write: the set holds one descriptor of each.
				a = append(a, "-add-fd", "fd="+strconv.Itoa(blockFD)+",set="+set)
				blockFD++
			}
			drive = "if=none,id=" + d.ID + ",file.driver=host_device,file.filename=/dev/fdset/" + set +
				",format=raw,cache=writeback,discard=unmap"
		}
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		a = append(a, "-drive", drive,
			"-device", "virtio-blk-"+bus+",drive="+d.ID+",id="+d.ID+"-dev,serial="+d.Serial)
	}
	return a
}

// blockFDSet numbers the descriptor sets of block devices (one per disk).
const blockFDSet = 10

// blockDevice is a host block device the guard opens for QEMU.
type blockDevice struct {
	Path     string
	ReadOnly bool
}

// blockDevices are c's disks the guard opens, in order.
func blockDevices(c Config) []blockDevice {
	var b []blockDevice
	for _, d := range c.Disks {
		if d.Block {
			b = append(b, blockDevice{Path: d.Path, ReadOnly: d.ReadOnly})
		}
	}
	return b
}

// openBlockDevices opens the devices as diskArgs hands them to QEMU: a
// read-only descriptor, then a read-write one unless the disk is
// read-only.
func openBlockDevices(devs []blockDevice) ([]*os.File, error) {
	var files []*os.File
	for _, d := range devs {
		modes := []int{os.O_RDONLY}
		if !d.ReadOnly {
			modes = append(modes, os.O_RDWR)
		}
		for _, m := range modes {
			f, err := os.OpenFile(d.Path, m|unix.O_CLOEXEC, 0)
			if err != nil {
				closeFiles(files)
				return nil, fmt.Errorf("block device: %w", err)
			}
			files = append(files, f)
		}
	}
	return files, nil
}

// DiskSizer is implemented by backends that can tell a running guest a
// disk's size again.
type DiskSizer interface {
	// AnnounceDiskSize sets disk id to size bytes (its file's size: the
	// file does not change) and notifies the guest, whose driver then
	// reads the disk's capacity anew.
	AnnounceDiskSize(ctx context.Context, id string, size int64) error
}

// AnnounceDiskSize is QMP block_resize to the size the disk's file has:
// QEMU truncates it to what it is and raises a virtio config change. A
// guest whose virtio_blk is built into its kernel probed a VM template's
// placeholder disk before the save and keeps its capacity in every
// clone; this makes it read the clone's own. A guest with the driver
// unbound (the stock kernel's, loaded on demand) ignores it.
func (q *qemu) AnnounceDiskSize(ctx context.Context, id string, size int64) error {
	return q.qmpDo(ctx, func(m *QMP) error {
		if _, err := m.Execute(ctx, "block_resize", map[string]any{"device": id, "size": size}); err != nil {
			return fmt.Errorf("announce disk %s size: %w", id, err)
		}
		return nil
	})
}
