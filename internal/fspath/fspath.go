// Package fspath canonicalises the paths skiff keeps (--root,
// factory.dir) once, where they are read: every process must name the
// same directories, and mountinfo names mount points by canonical paths.
// It imports nothing of skiff's.
package fspath

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Canonical is path absolute with the symlinks of its longest existing
// prefix resolved: what the path will resolve to once it exists.
func Canonical(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return filepath.Clean(path)
	}
	var rest []string
	for p := abs; ; p = filepath.Dir(p) {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(append([]string{real}, rest...)...)
		}
		if p == "/" {
			return abs
		}
		rest = append([]string{filepath.Base(p)}, rest...)
	}
}

// EnsurePrivateDir creates dir (mode 0700) if needed and refuses one that
// another user owns or that others may write to: sockets and files planted
// there must never be trusted. what names it in errors ("state root").
func EnsurePrivateDir(dir, what, hint string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%s %s: %w", what, dir, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return fmt.Errorf("%s %s: %w", what, dir, err)
	}
	if int(st.Uid) != os.Geteuid() || st.Mode&0o022 != 0 {
		return fmt.Errorf("%s %s is owned by uid %d with mode %o: it must be owned by uid %d and not writable by others (chmod 700 it, or %s)", what, dir, st.Uid, st.Mode&0o777, os.Geteuid(), hint)
	}
	return nil
}
