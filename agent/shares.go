package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

func validateShare(s protocol.Share) error {
	switch {
	case s.Tag == "" || strings.ContainsAny(s.Tag, ",\x00"):
		return fmt.Errorf("share %q: invalid tag", s.Tag)
	case !filepath.IsAbs(s.GuestPath) || filepath.Clean(s.GuestPath) != s.GuestPath || s.GuestPath == "/":
		return fmt.Errorf("share %s: guest path %q must be absolute, clean and not /", s.Tag, s.GuestPath)
	case s.FSType != "9p" && s.FSType != "virtiofs":
		return fmt.Errorf("share %s: unsupported fsType %q (want 9p or virtiofs)", s.Tag, s.FSType)
	}
	return nil
}

// mountShares mounts the shares not mounted yet and returns those it
// mounted. A guest path already holding the same share is reused.
func (a *Agent) mountShares(shares []protocol.Share) (mounted []protocol.Share, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	defer func() {
		if err != nil {
			a.unmountSharesLocked(mounted)
			mounted = nil
		}
	}()
	for _, s := range shares {
		if have, ok := a.shares[s.GuestPath]; ok {
			if have != s {
				return mounted, fmt.Errorf("share %s: %s already holds share %s", s.Tag, s.GuestPath, have.Tag)
			}
			continue
		}
		if err := mountShare(s); err != nil {
			return mounted, err
		}
		a.shares[s.GuestPath] = s
		mounted = append(mounted, s)
		a.log.debugf("mounted share %s on %s", s.Tag, s.GuestPath)
	}
	return mounted, nil
}

func (a *Agent) unmountShares(shares []protocol.Share) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.unmountSharesLocked(shares)
}

func (a *Agent) unmountSharesLocked(shares []protocol.Share) {
	for _, s := range shares {
		unix.Unmount(s.GuestPath, unix.MNT_DETACH)
		delete(a.shares, s.GuestPath)
	}
}

// 9p cache=mmap: the page cache only backs mmap, so writes reach the host
// at once (a host reading a file the container wrote sees it) while
// binaries can still be executed and mapped, which cache=none cannot do
// for shared writable mappings.
const ninepOptions = "trans=virtio,version=9p2000.L,msize=262144"

func mountShare(s protocol.Share) error {
	if err := os.MkdirAll(s.GuestPath, 0o755); err != nil {
		return fmt.Errorf("share %s: %w", s.Tag, err)
	}
	var flags uintptr
	if s.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	var err error
	switch s.FSType {
	case "9p":
		err = unix.Mount(s.Tag, s.GuestPath, "9p", flags, ninepOptions+",cache=mmap")
		if err == unix.EINVAL {
			err = unix.Mount(s.Tag, s.GuestPath, "9p", flags, ninepOptions)
		}
	case "virtiofs":
		err = unix.Mount(s.Tag, s.GuestPath, "virtiofs", flags, "")
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

// unmountAllShares unmounts every share, before the guest powers off.
func (a *Agent) unmountAllShares() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for path := range a.shares {
		unmount(path)
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
	if err := mountShare(s); err != nil {
		return err
	}
	os.ReadDir(s.GuestPath)
	unmount(s.GuestPath)
	os.Remove(s.GuestPath)
	return nil
}
