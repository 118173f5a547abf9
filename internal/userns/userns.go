// Package userns says whether skiff runs rootless: as a user other than
// root, or as root in a user namespace other than the host's (rootless
// podman runs its OCI runtime so). A rootless skiff keeps its state under
// $XDG_RUNTIME_DIR, as runc does, and does without what only the host's
// root may do (host cgroups unless delegated, the VM jail).
package userns

import (
	"os"
	"path/filepath"
	"strings"
)

// Initial reports whether this process is in the host's user namespace.
func Initial() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295"
}

// Rootless reports whether this process lacks the host's root.
func Rootless() bool { return os.Geteuid() != 0 || !Initial() }

// RuntimeDir returns $XDG_RUNTIME_DIR/name for a rootless process whose
// XDG_RUNTIME_DIR is set, else def: root's directories under /run are not
// a rootless user's to write.
func RuntimeDir(name, def string) string {
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" && Rootless() {
		return filepath.Join(dir, name)
	}
	return def
}
