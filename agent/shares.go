package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

func validateShare(s protocol.Share) error {
	switch {
	case s.Tag == "" || strings.ContainsAny(s.Tag, ",\x00"):
		return fmt.Errorf("share %q: invalid tag", s.Tag)
	case !filepath.IsAbs(s.GuestPath) || filepath.Clean(s.GuestPath) != s.GuestPath || s.GuestPath == "/":
		return fmt.Errorf("share %s: guest path %q must be absolute, clean and not /", s.Tag, s.GuestPath)
	case s.FSType != "9p" && s.FSType != "virtiofs" && !protocol.DiskFS(s.FSType):
		return fmt.Errorf("share %s: unsupported fsType %q (want 9p, virtiofs, or ext2/3/4 for a disk)", s.Tag, s.FSType)
	}
	return nil
}

// mountedShare is a share mounted in the guest and how many containers
// hold it: a pod's containers may name the same share, and it stays
// mounted until the last of them is removed.
type mountedShare struct {
	protocol.Share
	holders int
}

// holdShares mounts the shares not mounted yet and takes a hold on each,
// to give back with releaseShares. A guest path already holding the same
// share is reused.
func (a *Agent) holdShares(shares []protocol.Share) (held []protocol.Share, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	defer func() {
		if err != nil {
			a.releaseSharesLocked(held)
			held = nil
		}
	}()
	for _, s := range shares {
		if have, ok := a.shares[s.GuestPath]; ok {
			if have.Share != s {
				return held, fmt.Errorf("share %s: %s already holds share %s", s.Tag, s.GuestPath, have.Tag)
			}
			have.holders++
			held = append(held, s)
			continue
		}
		if err := mountShare(s, a.log); err != nil {
			return held, err
		}
		a.shares[s.GuestPath] = &mountedShare{Share: s, holders: 1}
		held = append(held, s)
		a.log.debugf("mounted share %s on %s", s.Tag, s.GuestPath)
	}
	return held, nil
}

// releaseShares gives back holds taken by holdShares, and unmounts the
// shares no container holds any more.
func (a *Agent) releaseShares(shares []protocol.Share) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.releaseSharesLocked(shares)
}

func (a *Agent) releaseSharesLocked(shares []protocol.Share) {
	for _, s := range shares {
		have, ok := a.shares[s.GuestPath]
		if !ok {
			continue
		}
		if have.holders--; have.holders > 0 {
			continue
		}
		// Lazily: a process of the guest may still have a file of it
		// open. The mount point stays: it may be inside another share,
		// a host directory.
		unix.Unmount(s.GuestPath, unix.MNT_DETACH)
		delete(a.shares, s.GuestPath)
		a.log.debugf("unmounted share %s from %s", s.Tag, s.GuestPath)
	}
}

// 9p cache=mmap: the page cache only backs mmap, so writes reach the host
// at once (a host reading a file the container wrote sees it) while
// binaries can still be executed and mapped, which cache=none cannot do
// for shared writable mappings.
const ninepOptions = "trans=virtio,version=9p2000.L,msize=262144"

// mountDisk mounts the filesystem of the disk whose serial is s.Tag: its
// driver and ext4 are the scratch disk's modules.
func mountDisk(s protocol.Share, flags uintptr, log *logger) error {
	if err := loadModuleList(filepath.Join(modulesDir, scratchModulesFile), log); err != nil {
		log.debugf("disk modules: %v", err) // the mount says whether it matters
	}
	deadline := time.Now().Add(scratchProbeWait)
	dev, err := findDisk(s.Tag, scratchProbeWait)
	if err != nil {
		return err
	}
	for {
		// The ext4 driver mounts ext2 and ext3 too. A disk plugged in
		// a moment ago shows in sysfs before it can be opened (ENXIO).
		err := unix.Mount(dev, s.GuestPath, "ext4", flags, "")
		if err != unix.ENXIO || time.Now().After(deadline) {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// virtiofsModulesFile lists the modules a virtio-fs share needs, loaded on
// the first such mount: only cold-booted VMs share that way.
const virtiofsModulesFile = "modules.virtiofs"

func mountShare(s protocol.Share, log *logger) error {
	if err := os.MkdirAll(s.GuestPath, 0o755); err != nil {
		return fmt.Errorf("share %s: %w", s.Tag, err)
	}
	var flags uintptr
	if s.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	var err error
	switch {
	case s.FSType == "9p":
		err = unix.Mount(s.Tag, s.GuestPath, "9p", flags, ninepOptions+",cache=mmap")
		if err == unix.EINVAL {
			err = unix.Mount(s.Tag, s.GuestPath, "9p", flags, ninepOptions)
		}
	case s.FSType == "virtiofs":
		if lerr := loadModuleList(filepath.Join(modulesDir, virtiofsModulesFile), log); lerr != nil {
			log.debugf("virtiofs modules: %v", lerr) // the mount says whether it matters
		}
		err = unix.Mount(s.Tag, s.GuestPath, "virtiofs", flags, "")
	case protocol.DiskFS(s.FSType):
		err = mountDisk(s, flags, log)
	}
	if err != nil {
		return fmt.Errorf("mount %s share %s on %s: %w", s.FSType, s.Tag, s.GuestPath, err)
	}
	return nil
}

// unmount unmounts path, lazily if it is busy.
func unmount(path string) {
	if err := unix.Unmount(path, 0); err != nil {
		unix.Unmount(path, unix.MNT_DETACH)
	}
}

// unmountDisks unmounts the shares that are the guest's own filesystems
// on a disk (a block-device rootfs), before the guest powers off, so
// that the host finds them clean. A 9p or virtio-fs share holds nothing
// the sync before did not send, nor does the scratch disk, which nothing
// reads after its sandbox.
func (a *Agent) unmountDisks() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for path, s := range a.shares {
		if protocol.DiskFS(s.FSType) {
			unmount(path)
		}
	}
}

// touchShare mounts s on its guest path, reads its top directory and
// unmounts it: the warm-up's way through a share. The guest must hold no
// container and no share.
func (a *Agent) touchShare(s protocol.Share) error {
	if err := validateShare(s); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, busy := a.shares[s.GuestPath]; busy || len(a.containers) > 0 {
		return fmt.Errorf("warm: the guest is in use")
	}
	if err := mountShare(s, a.log); err != nil {
		return err
	}
	os.ReadDir(s.GuestPath)
	unmount(s.GuestPath)
	os.Remove(s.GuestPath)
	return nil
}
