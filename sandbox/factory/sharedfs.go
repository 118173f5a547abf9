package factory

import (
	"github.com/skiff-oci/skiff/hypervisor"
)

// How a sandbox's files reach its guest (runtime.shared_fs). A clone of a
// template (the pool's VMs are clones too) shares over 9p: virtio-fs needs
// the guest's RAM shared with virtiofsd, which a clone's private mapping
// of the template's RAM is not (hypervisor/virtiofs.go). A VM that boots
// cold can have either, and under "auto" gets virtio-fs where this host
// can serve it: metadata work (untar, stat, small files) over virtio-fs
// is 1.5-40x faster than over skiff's 9p (scripts/bench-storage.sh, the
// README's "Storage, measured"), while a clone starts ~3x sooner than a
// cold boot, so "auto" keeps clones wherever a template serves and gives
// the rest virtio-fs. "virtio-fs" boots every sandbox cold, "9p" never
// uses virtio-fs.

// clonesAllowed reports whether sandboxes may come from a template or the
// pool: not when the configuration asks for virtio-fs, which they cannot
// have.
func (f *Factory) clonesAllowed() bool {
	return f.cfg.Runtime.SharedFS != "virtio-fs"
}

// coldFS is how a cold-booted VM shares, and why when it is not virtio-fs
// under "auto".
func (f *Factory) coldFS() (hypervisor.FS, error) {
	switch f.cfg.Runtime.SharedFS {
	case "virtio-fs":
		// An error of the boot if this host cannot (hypervisor.New).
		return hypervisor.FSVirtio, nil
	case "auto":
		if err := f.host.virtioFS(); err != nil {
			return hypervisor.FS9P, err
		}
		return hypervisor.FSVirtio, nil
	}
	return hypervisor.FS9P, nil
}
