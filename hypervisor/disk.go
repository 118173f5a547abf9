package hypervisor

import (
	"context"
	"fmt"
	"regexp"
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
	}
	return nil
}

// diskArgs are the drives and virtio-blk devices of disks, on bus
// ("pci" or "device"). The image is raw: its size on the host is the
// disk's size, and QEMU refuses guest I/O past it, so a guest never makes
// the file larger than the host made it. cache=unsafe: a scratch disk
// lives and dies with its sandbox, and nothing reads it after a host
// crash, so the guest's flushes need not reach the host's disk (it is
// the host's page cache that keeps them). Discards are passed on as
// holes, so space the guest frees may be given back to the host.
func diskArgs(disks []Disk, bus string) []string {
	var a []string
	for _, d := range disks {
		a = append(a,
			"-drive", "if=none,id="+d.ID+",file="+optValue(d.Path)+",format=raw,cache=unsafe,discard=unmap",
			"-device", "virtio-blk-"+bus+",drive="+d.ID+",id="+d.ID+"-dev,serial="+d.Serial)
	}
	return a
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
