// Package fspath canonicalises the paths skiff keeps (--root,
// factory.dir) once, where they are read: every process must name the
// same directories, and mountinfo names mount points by canonical paths.
// It imports nothing of skiff's.
package fspath

import "path/filepath"

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
