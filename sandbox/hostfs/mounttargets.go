package hostfs

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/skiff-oci/skiff/sandbox/oci"
	"golang.org/x/sys/unix"
)

// CreateMountTargets makes the missing mount points of a read-only rootfs
// on the host, before the VM starts: the guest sees that rootfs through a
// share QEMU keeps read-only, so it cannot make them itself. runc makes
// them in the rootfs too. The rootfs is untrusted, so every path is
// resolved inside it (RESOLVE_IN_ROOT): a symlink in it cannot lead the
// host out of it.
func CreateMountTargets(rootfs string, mounts []specs.Mount) error {
	root, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open rootfs %s: %w", rootfs, err)
	}
	defer unix.Close(root)

	var covered []string // destinations of filesystems mounted in the guest
	for _, m := range mounts {
		dst := filepath.Clean(m.Destination)
		if under(dst, covered) {
			continue
		}
		if !oci.IsBind(m) {
			covered = append(covered, dst)
		}
		file := false
		if oci.IsBind(m) {
			if fi, err := statFollow(m.Source); err == nil && !fi {
				file = true
			}
		}
		if err := mkdirInRoot(root, dst, file); err != nil {
			return fmt.Errorf("create mount point %s in read-only rootfs %s: %w", dst, rootfs, err)
		}
	}
	return nil
}

// under tells whether p lies below one of dirs (a filesystem the guest
// mounts there first, such as the tmpfs on /dev).
func under(p string, dirs []string) bool {
	for _, d := range dirs {
		if strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// statFollow reports whether path is a directory.
func statFollow(path string) (bool, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return false, err
	}
	return st.Mode&unix.S_IFMT == unix.S_IFDIR, nil
}

// mkdirInRoot creates path (absolute, as seen from inside root) and its
// missing parents; the last component is an empty file when file is set.
func mkdirInRoot(root int, path string, file bool) error {
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	parent := "."
	for i, name := range parts {
		if name == "" {
			continue
		}
		cur := filepath.Join(parent, name)
		fd, err := openInRoot(root, cur)
		if err == nil {
			unix.Close(fd)
			parent = cur
			continue
		}
		if !errors.Is(err, unix.ENOENT) {
			return err
		}
		pfd, err := openInRoot(root, parent)
		if err != nil {
			return err
		}
		last := i == len(parts)-1
		if last && file {
			var nfd int
			nfd, err = unix.Openat(pfd, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
			if err == nil {
				unix.Close(nfd)
			}
		} else {
			err = unix.Mkdirat(pfd, name, 0o755)
		}
		unix.Close(pfd)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return err
		}
		parent = cur
	}
	return nil
}

func openInRoot(root int, path string) (int, error) {
	return unix.Openat2(root, path, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
}
