package shim

import (
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/config"
	"github.com/skiff-oci/skiff/hypervisor"
	"github.com/skiff-oci/skiff/sandbox/hostdisk"
	"github.com/skiff-oci/skiff/sandbox/hostfs"
	"github.com/skiff-oci/skiff/sandbox/oci"
)

// planFiles plans how container id's files reach the guest: its scratch
// mounts on the sandbox's disk (hostdisk), the rest through the shared
// filesystem (shares, made by plan), then the scratch mounts back in
// their places in the spec the guest gets. targets are the container's
// mounts with their host sources, for the mount points a read-only
// rootfs needs (a scratch mount's is a directory).
func (s *shim) planFiles(id string, b *oci.Bundle, plan func(*oci.Bundle) (*hostfs.Plan, error)) (_ *hostfs.Plan, _ *hostdisk.Plan, targets []specs.Mount, err error) {
	rest, scratch, err := hostdisk.Split(b.Spec, id, hostdisk.Rules{Paths: s.cfg.Storage.ScratchPaths, IsTmpfs: isTmpfs})
	if err != nil {
		return nil, nil, nil, err
	}
	shared := *b
	shared.Spec = rest
	p, err := plan(&shared)
	if err != nil {
		return nil, nil, nil, err
	}
	scratch.Restore(p.Spec)
	host := *rest
	host.Mounts = append([]specs.Mount{}, rest.Mounts...)
	scratch.Restore(&host)
	return p, scratch, host.Mounts, nil
}

// isTmpfs tells a memory-backed emptyDir (kubelet mounts a tmpfs at its
// host path): it stays in RAM, shared as it is.
func isTmpfs(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.TMPFS_MAGIC
}

// scratchSize is the size of the sandbox's disk: the annotation on the
// spec that makes the sandbox, else the configuration's.
func scratchSize(cfg *config.Storage, spec *specs.Spec) (int64, error) {
	if v, ok := spec.Annotations[hostdisk.AnnotationSize]; ok {
		n, err := config.ScratchBytes(v)
		if err != nil {
			return 0, fmt.Errorf("annotation %s: %w", hostdisk.AnnotationSize, err)
		}
		return n, nil
	}
	return config.ScratchBytes(cfg.ScratchSize)
}

// makeDisk makes the sandbox's scratch disk file and gives it to the VM
// of c. Every sandbox has one (see hostdisk.Disk): a pod's later
// containers may need it, and a VM template carries the device anyway.
func (s *shim) makeDisk(spec *specs.Spec, c *hypervisor.Config) error {
	size, err := scratchSize(&s.cfg.Storage, spec)
	if err != nil {
		return err
	}
	os.Remove(s.dir.ScratchImage()) // a failed earlier attempt's
	if s.disk, err = hostdisk.Create(s.dir.ScratchImage(), size); err != nil {
		return err
	}
	c.Disks = []hypervisor.Disk{s.disk.VMDisk()}
	return nil
}

// useLeaseDisk switches to the disk of a VM taken from the pool: its
// QEMU opened its own file, made and formatted by the filler at the
// sandbox's size.
func (s *shim) useLeaseDisk() error {
	path := s.lease.PooledDisk()
	if path == "" {
		return nil
	}
	d, err := hostdisk.Formatted(path)
	if err != nil {
		return err
	}
	os.Remove(s.disk.Path)
	s.disk = d
	return nil
}
