// Package hostfs brings a container's files to its VM: it plans the
// shared-filesystem devices a bundle needs (the rootfs, and one share each
// for every bind-mounted directory and file), makes the host bind mounts
// they go through in the sandbox's directory, and undoes them without
// ever crossing into a mount it did not make. It is host plumbing: it must
// not import hostnet, hostcgroup, the factory, the shim or the state store.
package hostfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agentclient/protocol"
	"github.com/skiff-oci/skiff/hypervisor"
	"github.com/skiff-oci/skiff/sandbox/oci"
)

// GuestShareDir is where the agent mounts shares inside the guest.
const GuestShareDir = "/run/skiff/shares"

// The directories of a sandbox's directory whose binds are shared.
func dirsDir(sandbox string) string  { return filepath.Join(sandbox, "dirs") }
func filesDir(sandbox string) string { return filepath.Join(sandbox, "files") }

// Plan says how a container's host files reach the guest, in at most
// three shared-filesystem devices: the rootfs; every bind-mounted
// directory, each bind-mounted on the host at dirs/K in the state
// directory, which is shared once for all of them; every bind-mounted
// file, each alone in a directory files/K/, shared the same way. Sharing a
// file's parent directory instead would hand the guest every sibling of,
// say, /etc/hosts. A fixed number of devices, however many mounts a
// container has (a Kubernetes pod's volumes, podman's -v), is what lets
// every sandbox come from a VM template, and fewer devices boot faster.
type Plan struct {
	Host  []hypervisor.Share
	Guest []protocol.Share
	// Disks are host block devices the VM gets (a block rootfs:
	// UseRootDisk), and blockRoot the rootfs's mount they come from.
	Disks     []hypervisor.Disk
	blockRoot *blockRoot
	// Spec is the bundle's spec with host paths rewritten to guest paths.
	Spec *specs.Spec
	// binds are host bind mounts to make before the VM starts, under
	// the state directory's dirs/ and files/.
	binds []hostBind
	// pod: the sandbox of a pod, whose dirs/ share is also where its
	// other containers appear (pod.go).
	pod bool
	// dirsGuest is where the dirs/ share is mounted in the guest, and
	// nested the subdirectory of it where dirs/ itself appears.
	dirsGuest, nested string
}

// hostBind is one bind mount of a container's source (a directory or a
// file) into the state directory.
type hostBind struct {
	source, target string
	dir, readOnly  bool
}

func hasOption(m specs.Mount, opt string) bool {
	for _, o := range m.Options {
		if o == opt {
			return true
		}
	}
	return false
}

// PlanShares computes the shares of a bundle's container in the sandbox
// whose directory is sandbox. A pod's sandbox (pod) always shares dirs/:
// the pod's other containers reach the guest through it. It touches
// nothing.
func PlanShares(sandbox string, b *oci.Bundle, pod bool) (*Plan, error) {
	spec := *b.Spec // shallow copy; the slices we change are replaced
	p := &Plan{Spec: &spec, pod: pod}

	add := func(tag, host string, ro bool) string {
		guest := filepath.Join(GuestShareDir, tag)
		p.Host = append(p.Host, hypervisor.Share{Tag: tag, HostPath: host, ReadOnly: ro})
		p.Guest = append(p.Guest, protocol.Share{Tag: tag, GuestPath: guest, ReadOnly: ro, FSType: "9p"})
		return guest
	}

	root := *spec.Root
	root.Path = add("rootfs", b.Rootfs, root.Readonly)
	spec.Root = &root

	binds, dirMounts, fileMounts, err := planBinds(&spec, b, dirsDir(sandbox), filesDir(sandbox))
	if err != nil {
		return nil, err
	}
	p.binds = binds
	// Tags are numbered in order (m0, m1): VM templates carry a fixed set
	// of them. Each share is writable: a read-only mount is read-only
	// through its own host bind mount.
	for _, group := range []struct {
		mounts []sharedMount
		dir    string
		always bool
	}{{dirMounts, dirsDir(sandbox), pod}, {fileMounts, filesDir(sandbox), false}} {
		if len(group.mounts) == 0 && !group.always {
			continue
		}
		guest := add(fmt.Sprintf("m%d", len(p.Host)-1), group.dir, false)
		if group.dir == dirsDir(sandbox) {
			p.dirsGuest = guest
		}
		for _, m := range group.mounts {
			spec.Mounts[m.index].Source = filepath.Join(guest, m.rel)
		}
	}
	// Hooks run on the host, never in the guest.
	spec.Hooks = nil
	return p, nil
}

// ServeWith sets how the guest mounts the plan's shares: over virtio-fs,
// or 9p (PlanShares's default).
func (p *Plan) ServeWith(fs hypervisor.FS) {
	t := "9p"
	if fs == hypervisor.FSVirtio {
		t = "virtiofs"
	}
	for i := range p.Guest {
		if !protocol.DiskFS(p.Guest[i].FSType) {
			p.Guest[i].FSType = t
		}
	}
}

// planBinds plans a host bind mount for every bind mount of spec (a copy
// of b's, whose Mounts it replaces): directory K at dirs/K/NAME, file K
// alone in files/K/. It returns the binds and, by kind, which of spec's mounts
// they are.
func planBinds(spec *specs.Spec, b *oci.Bundle, dirs, files string) (binds []hostBind, dirMounts, fileMounts []sharedMount, err error) {
	spec.Mounts = make([]specs.Mount, len(b.Spec.Mounts))
	for i, m := range b.Spec.Mounts {
		spec.Mounts[i] = m
		if !oci.IsBind(m) {
			continue
		}
		src := m.Source
		if !filepath.IsAbs(src) {
			src = filepath.Join(b.Dir, src)
		}
		fi, err := os.Stat(src)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("mount %s: source %s does not exist", m.Destination, src)
		}
		ro := hasOption(m, "ro")
		switch {
		case fi.IsDir():
			// Directory K is bind-mounted, with what is mounted below
			// it, at dirs/K/NAME (NAME its own name, so that the
			// guest's mountinfo shows a bind of a directory of that
			// name, as runc's does): read-only all the way down when
			// the mount is.
			rel := strconv.Itoa(len(dirMounts))
			if name := filepath.Base(src); name != "/" && name != "." {
				rel = filepath.Join(rel, name)
			}
			binds = append(binds, hostBind{source: src, target: filepath.Join(dirs, rel), dir: true, readOnly: ro})
			dirMounts = append(dirMounts, sharedMount{index: i, rel: rel})
		case fi.Mode().IsRegular():
			// File K is bind-mounted alone in files/K/, read-only on
			// the host when the mount is.
			k := strconv.Itoa(len(fileMounts))
			rel := filepath.Join(k, filepath.Base(src))
			binds = append(binds, hostBind{source: src, target: filepath.Join(files, rel), readOnly: ro})
			fileMounts = append(fileMounts, sharedMount{index: i, rel: rel})
		default:
			// Device nodes and sockets: the guest has its own /dev; a host
			// device never reaches it through a file share.
		}
	}
	return binds, dirMounts, fileMounts, nil
}

// sharedMount is a spec mount shared through dirs/ or files/: its index
// in Mounts and its path in that share.
type sharedMount struct {
	index int
	rel   string
}

// MountBinds makes the host bind mounts of the plan. On error, what was
// mounted is undone by Unmount on the sandbox's directory.
func (p *Plan) MountBinds(sandbox string) error {
	for _, share := range []string{dirsDir(sandbox), filesDir(sandbox)} {
		var binds []hostBind
		for _, b := range p.binds {
			if strings.HasPrefix(b.target, share+"/") {
				binds = append(binds, b)
			}
		}
		pod := p.pod && share == dirsDir(sandbox)
		if len(binds) == 0 && !pod {
			continue
		}
		if pod {
			binds = append(binds, hostBind{target: podTarget(sandbox), dir: true})
		}
		for _, b := range binds {
			if err := makeBindTarget(b); err != nil {
				return err
			}
		}
		// The share is writable (for the mounts that are), but the guest
		// must not create anything in it: the binds are mounted on top
		// of its read-only self.
		if err := ProtectDir(share); err != nil {
			return err
		}
		for _, b := range binds {
			if b.source == "" {
				continue // the pod's area, below
			}
			if err := BindReadOnlyIf(b.source, b.target, b.readOnly); err != nil {
				return err
			}
		}
		if pod {
			if err := mountPodArea(sandbox); err != nil {
				return err
			}
		}
	}
	return nil
}

// ProtectDir makes dir a read-only bind mount of itself, private: a
// directory a VM's share exports, in which the guest must create nothing
// (what is mounted on top of it later keeps its own mode). Private: what
// is mounted below it stays in this namespace. Where the state directory
// sits on a shared mount (systemd's /run), each bind would otherwise reach
// every peer, and a bind of a source holding the state directory (a
// container given the host's /) would multiply with every sandbox.
func ProtectDir(dir string) error {
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("bind %s read-only: %w", dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make %s private: %w", dir, err)
	}
	return nil
}

// makeBindTarget creates the empty directory or file b is mounted on.
func makeBindTarget(b hostBind) error {
	if b.dir {
		return os.MkdirAll(b.target, 0o700)
	}
	if err := os.MkdirAll(filepath.Dir(b.target), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(b.target, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// BindReadOnlyIf bind-mounts source on target with what is mounted below
// it, as sharing source itself would show, and makes it read-only all the
// way down when ro: a read-only directory must not have a writable
// submount. The bind is a slave of source's mounts: what the host mounts
// below source later still shows (Kubernetes' HostToContainer
// propagation), and nothing goes back.
func BindReadOnlyIf(source, target string, ro bool) error {
	if err := unix.Mount(source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", source, err)
	}
	if err := unix.Mount("", target, "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("bind %s as a slave: %w", source, err)
	}
	if ro {
		attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		if err := unix.MountSetattr(-1, target, unix.AT_RECURSIVE, attr); err != nil {
			return fmt.Errorf("bind %s read-only: %w", source, err)
		}
	}
	return nil
}

// Nest moves every guest path of the plan's spec into the subdirectory sub
// of its share: a pooled VM's share exports a directory the sandbox's own
// is bind-mounted under (see pool.go).
func (p *Plan) Nest(sub string) {
	move := func(path string) string {
		for _, g := range p.Guest {
			if protocol.DiskFS(g.FSType) {
				continue // a disk, not a pooled VM's share slot
			}
			if path == g.GuestPath || strings.HasPrefix(path, g.GuestPath+"/") {
				return filepath.Join(g.GuestPath, sub, strings.TrimPrefix(path, g.GuestPath))
			}
		}
		return path
	}
	root := *p.Spec.Root
	root.Path = move(root.Path)
	p.Spec.Root = &root
	mounts := make([]specs.Mount, len(p.Spec.Mounts))
	for i, m := range p.Spec.Mounts {
		mounts[i] = m
		if oci.IsBind(m) {
			mounts[i].Source = move(m.Source)
		}
	}
	p.Spec.Mounts = mounts
	p.nested = sub
}
