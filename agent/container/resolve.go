package container

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// securePath resolves p as if root were "/": symlinks met on the way are
// followed but cannot lead outside root (an absolute link restarts at root,
// ".." stops at root). Components that do not exist yet are kept as they
// are. The result is a host path under root.
func securePath(root, p string) (string, error) {
	root = filepath.Clean(root)
	var resolved string // inside root, always clean and starting with "/" or empty
	rest := filepath.Clean("/" + p)
	links := 0
	for rest != "" {
		var comp string
		rest = strings.TrimLeft(rest, "/")
		comp, rest, _ = strings.Cut(rest, "/")
		switch comp {
		case "", ".":
			continue
		case "..":
			resolved = filepath.Dir(resolved)
			if resolved == "/" || resolved == "." {
				resolved = ""
			}
			continue
		}
		next := resolved + "/" + comp
		fi, err := os.Lstat(root + next)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				resolved = next
				continue
			}
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			resolved = next
			continue
		}
		links++
		if links > 40 {
			return "", errors.New("too many levels of symbolic links")
		}
		target, err := os.Readlink(root + next)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			resolved = ""
		}
		rest = target + "/" + rest
	}
	return root + resolved, nil
}
