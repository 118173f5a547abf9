package e2e

import "fmt"

// SharedFSArgs are the global flags of a configuration whose sandboxes
// boot cold and share files over fs ("9p" or "virtio-fs"): a clone of a
// template always shares over 9p, so only a cold boot can show virtio-fs.
func (e *Env) SharedFSArgs(fs string) []string {
	cfg := e.WriteFile("sharedfs-"+fs+".toml", fmt.Sprintf("[factory]\ntemplate = false\n\n[runtime]\nshared_fs = %q\n", fs))
	return []string{"--config", cfg}
}
