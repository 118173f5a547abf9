// Package dirsnap records a directory tree's files (mode and content), for
// tests that check what a command wrote, or that it wrote nothing.
package dirsnap

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Of maps every file below dir (by its path under dir) to its mode and
// content.
func Of(dir string) (map[string]string, error) {
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		m[strings.TrimPrefix(p, dir)] = fi.Mode().String() + "\n" + string(data)
		return err
	})
	return m, err
}
