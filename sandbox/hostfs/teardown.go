package hostfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/hypervisor"
	"github.com/skiff-oci/skiff/internal/mountinfo"
)

// Unmount detaches every mount at or below dir, deepest first: what makes
// a sandbox's directory safe to remove after any crash. dir is resolved
// first (a --root through a symlink, or relative), since mountinfo names
// mount points by their canonical paths.
func Unmount(dir string) error {
	canon, err := canonical(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	mounts, err := mountinfo.Read()
	if err != nil {
		return fmt.Errorf("unmount below %s: %w", dir, err)
	}
	var points []string
	for _, m := range mounts {
		if m.Point == canon || strings.HasPrefix(m.Point, canon+"/") {
			points = append(points, m.Point)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, mp := range points {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// Unbind detaches the bind mounts MountBinds made in the sandbox's
// directory, once its VM has stopped.
func Unbind(sandbox string) error {
	return errors.Join(Unmount(dirsDir(sandbox)), Unmount(filesDir(sandbox)), Unmount(podDir(sandbox)))
}

// canonical is dir absolute, with every symlink resolved.
func canonical(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}

// RemoveDir removes dir and what is below it, but never crosses into a
// mount: an entry on another mount than dir's (a bind mount left behind,
// a volume's contents) stops the removal with an error instead of being
// emptied.
func RemoveDir(dir string) error {
	id, err := mountID(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return removeOnMount(dir, id)
}

func removeOnMount(path string, id uint64) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		mid, err := mountID(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil // removed meanwhile (a pod's sandbox and container deleted at once)
		}
		if err != nil {
			return err
		}
		if mid != id {
			return fmt.Errorf("remove %s: a mount is still there (unmount it first)", path)
		}
		ents, err := os.ReadDir(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := removeOnMount(filepath.Join(path, e.Name()), id); err != nil {
				return err
			}
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// mountID is the ID of the mount path is on (statx STATX_MNT_ID), path
// itself not followed if a symlink.
func mountID(path string) (uint64, error) {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &st); err != nil {
		return 0, &os.PathError{Op: "statx", Path: path, Err: err}
	}
	if st.Mask&unix.STATX_MNT_ID == 0 {
		return 0, fmt.Errorf("statx %s: the kernel gives no mount ID (Linux 5.8 or later needed)", path)
	}
	return st.Mnt_id, nil
}

// BindShare bind-mounts a share's host directory (and what is mounted
// below it, as the share itself would show) on target, read-only all the
// way down for a read-only share: how a pooled VM, whose devices exist
// already, is given a sandbox's files.
func BindShare(sh hypervisor.Share, target string) error {
	if err := os.Mkdir(target, 0o700); err != nil && !os.IsExist(err) {
		return err
	}
	if err := BindReadOnlyIf(sh.HostPath, target, sh.ReadOnly); err != nil {
		return fmt.Errorf("share with the pooled VM: %w", err)
	}
	return nil
}
