package hostfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/sandbox/oci"
)

// A pod's other containers reach its VM without a device of their own:
// each one's rootfs and binds are bind-mounted on the host under pod/CID
// in the sandbox's directory, and the guest sees pod/ through the
// sandbox's dirs/ share, at dirs/pod. pod/ is a shared mount and dirs/pod
// a read-only slave of it: a container's binds made later under pod/
// appear in the guest, and the guest can create nothing in pod/ itself
// (each bind keeps its own mode).

// podDir is the host side of the pod area; podTarget where the guest
// sees it, in dirs/.
func podDir(sandbox string) string    { return filepath.Join(sandbox, "pod") }
func podTarget(sandbox string) string { return filepath.Join(dirsDir(sandbox), "pod") }

// mountPodArea makes pod/ a shared mount of its own and binds it on
// dirs/pod, read-only, as its slave.
func mountPodArea(sandbox string) error {
	dir, target := podDir(sandbox), podTarget(sandbox)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	steps := []struct {
		what                   string
		source, target, fstype string
		flags                  uintptr
	}{
		{"bind", dir, dir, "", unix.MS_BIND},
		{"make private", "", dir, "", unix.MS_PRIVATE},
		{"make shared", "", dir, "", unix.MS_SHARED},
		{"bind", dir, target, "", unix.MS_BIND},
		{"make slave", "", target, "", unix.MS_SLAVE},
		{"make read-only", "", target, "", unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY},
	}
	for _, st := range steps {
		if err := unix.Mount(st.source, st.target, st.fstype, st.flags, ""); err != nil {
			return fmt.Errorf("pod area: %s %s: %w", st.what, st.target, err)
		}
	}
	return nil
}

// GuestDirs is where the guest sees the sandbox's dirs/ (and so pod/ at
// GuestDirs()/pod): "" when the plan has no dirs/ share.
func (p *Plan) GuestDirs() string {
	if p.dirsGuest == "" {
		return ""
	}
	return filepath.Join(p.dirsGuest, p.nested)
}

// PlanPodContainer plans container cid of the pod whose sandbox's
// directory is sandbox and whose dirs/ the guest sees at guestDirs: its
// rootfs and binds under pod/CID. It adds no share; it touches nothing.
func PlanPodContainer(sandbox, cid string, b *oci.Bundle, guestDirs string) (*Plan, error) {
	if guestDirs == "" {
		return nil, errors.New("the pod's sandbox shares no directory for its containers")
	}
	host := filepath.Join(podDir(sandbox), cid)
	guest := filepath.Join(guestDirs, "pod", cid)
	spec := *b.Spec
	p := &Plan{Spec: &spec}
	binds, dirMounts, fileMounts, err := planBinds(&spec, b, filepath.Join(host, "d"), filepath.Join(host, "f"))
	if err != nil {
		return nil, err
	}
	root := *spec.Root
	root.Path = filepath.Join(guest, "rootfs")
	spec.Root = &root
	p.binds = append([]hostBind{{source: b.Rootfs, target: filepath.Join(host, "rootfs"), dir: true, readOnly: root.Readonly}}, binds...)
	for _, m := range dirMounts {
		spec.Mounts[m.index].Source = filepath.Join(guest, "d", m.rel)
	}
	for _, m := range fileMounts {
		spec.Mounts[m.index].Source = filepath.Join(guest, "f", m.rel)
	}
	spec.Hooks = nil
	return p, nil
}

// MountPodBinds makes the host binds of a pod container's plan. On
// error, RemovePodContainer undoes them.
func (p *Plan) MountPodBinds() error {
	for _, b := range p.binds {
		if err := makeBindTarget(b); err != nil {
			return err
		}
		if err := BindReadOnlyIf(b.source, b.target, b.readOnly); err != nil {
			return err
		}
	}
	return nil
}

// RemovePodContainer undoes the binds of container cid of the pod and
// removes its directory under pod/.
func RemovePodContainer(sandbox, cid string) error {
	dir := filepath.Join(podDir(sandbox), cid)
	if strings.ContainsRune(cid, '/') || cid == "" || cid == "." || cid == ".." {
		return fmt.Errorf("invalid container ID %q", cid)
	}
	if err := Unmount(dir); err != nil {
		return err
	}
	return RemoveDir(dir)
}
