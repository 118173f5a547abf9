package hostdisk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/skiff-oci/skiff/agentclient/protocol"
	"github.com/skiff-oci/skiff/hypervisor"
)

// DiskID is the scratch disk's drive and device ID in QEMU: a VM template
// and its clones name it alike.
const DiskID = "scratch"

// Disk is a sandbox's scratch disk: a sparse file that becomes ext4 the
// first time a container needs it.
//
// The file is always made (an empty sparse file costs a create and a
// truncate), so that every VM has the device, and a VM template with it
// serves every sandbox; mkfs.ext4 takes 60-150 ms on this project's
// machines, so it runs only for a sandbox with a scratch mount, in the
// background while the VM starts (QEMU reads only the file's size at
// start; the guest reads the disk first when the agent mounts it).
type Disk struct {
	Path string
	Size int64

	once sync.Once
	done chan struct{}
	err  error
}

// Create makes the sparse file of a new disk of size bytes at path. On
// error nothing is left.
func Create(path string, size int64) (*Disk, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("scratch disk: %w", err)
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("scratch disk %s: %w", path, err)
	}
	return &Disk{Path: path, Size: size, done: make(chan struct{})}, nil
}

// Formatted is the disk of a file another process made and formatted (a
// pooled VM's, made by its filler).
func Formatted(path string) (*Disk, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("scratch disk: %w", err)
	}
	d := &Disk{Path: path, Size: fi.Size(), done: make(chan struct{})}
	d.once.Do(func() { close(d.done) })
	return d, nil
}

// VMDisk is the disk as the VM is given it.
func (d *Disk) VMDisk() hypervisor.Disk {
	return hypervisor.Disk{ID: DiskID, Path: d.Path, Serial: protocol.ScratchSerial, Size: d.Size}
}

// formatTimeout bounds mkfs.ext4 on a sparse file: milliseconds, unless
// the host is badly overloaded.
const formatTimeout = 60 * time.Second

// FormatAsync starts making the filesystem, once; Ready waits for it.
func (d *Disk) FormatAsync() {
	d.once.Do(func() {
		go func() {
			d.err = format(d.Path)
			close(d.done)
		}()
	})
}

// Ready makes the filesystem if nothing started it yet and waits until
// it is made.
func (d *Disk) Ready() error {
	d.FormatAsync()
	<-d.done
	return d.err
}

// Wait waits for a format in progress, if any: the sandbox's teardown
// leaves no mkfs running on a file it removes.
func (d *Disk) Wait() {
	started := true
	d.once.Do(func() { started = false; close(d.done) })
	if started {
		<-d.done
	}
}

// format makes ext4 on the file at path. lazy_itable_init: the inode
// tables of a fresh sparse file read as zeros already, so mke2fs writes
// a few hundred KiB, not GiBs (the guest mounts with noinit_itable, so it
// does not zero them either); no journal: nothing reads the disk after a
// crash, and a journal doubles every metadata write the guest makes
// under emulation; -m 0: no blocks kept back for root, the disk is the
// container's; nodiscard: a new sparse file has nothing to discard.
func format(path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), formatTimeout)
	defer cancel()
	bin, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		for _, p := range []string{"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		return errors.New("scratch disk: mkfs.ext4 not found: install e2fsprogs (scripts/install-deps.sh does)")
	}
	cmd := exec.CommandContext(ctx, bin, "-F", "-q", "-m", "0", "-L", "skiff-scratch",
		"-O", "^has_journal", "-E", "lazy_itable_init=1,nodiscard", path)
	// It dies with the shim: delete --force of a shim killed meanwhile
	// finds nothing of it running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("scratch disk: mkfs.ext4 %s: %w: %s", path, err, strings.TrimSpace(string(out)))
	}
	return nil
}
