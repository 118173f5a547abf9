package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agentclient/protocol"
	"github.com/skiff-oci/skiff/hypervisor"
)

// guestShareDir is where the agent mounts shares inside the guest.
const guestShareDir = "/run/skiff/shares"

// sharePlan says how a container's host files reach the guest: the rootfs
// and each bind-mounted directory become a shared-filesystem device of
// their own; each bind-mounted file is bind-mounted on the host into a
// directory of its own under the state directory's files/, which is shared
// once for all of them. Sharing a file's parent directory instead would
// hand the guest every sibling of, say, /etc/hosts.
type sharePlan struct {
	Host  []hypervisor.Share
	Guest []protocol.Share
	// Spec is the bundle's spec with host paths rewritten to guest paths.
	Spec *specs.Spec
	// fileBinds are host bind mounts to make before the VM starts:
	// source file → mount point under the state directory.
	fileBinds []fileBind
}

type fileBind struct {
	source, target string
	readOnly       bool
}

func isBind(m specs.Mount) bool {
	if m.Type == "bind" {
		return true
	}
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return false
}

func hasOption(m specs.Mount, opt string) bool {
	for _, o := range m.Options {
		if o == opt {
			return true
		}
	}
	return false
}

// planShares computes the shares for a bundle. It touches nothing.
func planShares(d Dir, b *Bundle) (*sharePlan, error) {
	spec := *b.Spec // shallow copy; the slices we change are replaced
	p := &sharePlan{Spec: &spec}

	add := func(tag, host string, ro bool) string {
		guest := filepath.Join(guestShareDir, tag)
		p.Host = append(p.Host, hypervisor.Share{Tag: tag, HostPath: host, ReadOnly: ro})
		p.Guest = append(p.Guest, protocol.Share{Tag: tag, GuestPath: guest, ReadOnly: ro, FSType: "9p"})
		return guest
	}

	root := *spec.Root
	root.Path = add("rootfs", b.Rootfs, root.Readonly)
	spec.Root = &root

	spec.Mounts = make([]specs.Mount, len(b.Spec.Mounts))
	var fileMounts []fileMount
	for i, m := range b.Spec.Mounts {
		spec.Mounts[i] = m
		if !isBind(m) {
			continue
		}
		src := m.Source
		if !filepath.IsAbs(src) {
			src = filepath.Join(b.Dir, src)
		}
		fi, err := os.Stat(src)
		if err != nil {
			return nil, fmt.Errorf("mount %s: source %s does not exist", m.Destination, src)
		}
		ro := hasOption(m, "ro")
		switch {
		case fi.IsDir():
			// Tags are numbered in order (m0, m1, ...), whatever the
			// mount's index: VM templates carry a fixed set of them.
			spec.Mounts[i].Source = add(fmt.Sprintf("m%d", len(p.Host)-1), src, ro)
		case fi.Mode().IsRegular():
			// Every file bind goes into one share (below): file K is
			// bind-mounted alone in files/K/, read-only on the host
			// when the mount is.
			k := strconv.Itoa(len(p.fileBinds))
			target := filepath.Join(d.FilesDir(), k, filepath.Base(src))
			p.fileBinds = append(p.fileBinds, fileBind{source: src, target: target, readOnly: ro})
			fileMounts = append(fileMounts, fileMount{index: i, rel: filepath.Join(k, filepath.Base(src))})
		default:
			// Device nodes and sockets: the guest has its own /dev; a host
			// device never reaches it through a file share.
			spec.Mounts[i].Source = m.Source
		}
	}
	if len(fileMounts) > 0 {
		// One share however many files (podman binds four: hosts,
		// resolv.conf, hostname, .containerenv), so that they take one
		// of a template's slots. It is writable: a read-only file is
		// read-only through its own host bind mount.
		guest := add(fmt.Sprintf("m%d", len(p.Host)-1), d.FilesDir(), false)
		for _, f := range fileMounts {
			spec.Mounts[f.index].Source = filepath.Join(guest, f.rel)
		}
	}
	// Hooks run on the host, never in the guest.
	spec.Hooks = nil
	return p, nil
}

// fileMount is a spec mount of a single file: its index in Mounts and its
// path in the files share.
type fileMount struct {
	index int
	rel   string
}

// mountFiles makes the host bind mounts for file binds. On error, what was
// mounted is undone by unmountUnder on the state directory.
func (p *sharePlan) mountFiles() error {
	if len(p.fileBinds) == 0 {
		return nil
	}
	for _, fb := range p.fileBinds {
		if err := os.MkdirAll(filepath.Dir(fb.target), 0o700); err != nil {
			return err
		}
		f, err := os.OpenFile(fb.target, os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		f.Close()
	}
	// The share is writable (for the files that are), but the guest must
	// not create anything in it: files/ itself is a read-only bind mount,
	// the files are mounted on top of it.
	files := filepath.Dir(filepath.Dir(p.fileBinds[0].target))
	if err := unix.Mount(files, files, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", files, err)
	}
	if err := unix.Mount("", files, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("bind %s read-only: %w", files, err)
	}
	for _, fb := range p.fileBinds {
		if err := unix.Mount(fb.source, fb.target, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s: %w", fb.source, err)
		}
		if fb.readOnly {
			if err := unix.Mount("", fb.target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
				return fmt.Errorf("bind %s read-only: %w", fb.source, err)
			}
		}
	}
	return nil
}

// unmountUnder detaches every mount at or below dir, deepest first. It is
// what makes a state directory safe to remove after any crash.
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	prefix := filepath.Clean(dir) + "/"
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if strings.HasPrefix(mp, prefix) || mp == filepath.Clean(dir) {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, mp := range points {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// nest moves every guest path of the plan's spec into the subdirectory sub
// of its share: a pooled VM's share exports a directory the sandbox's own
// is bind-mounted under (see pool.go).
func (p *sharePlan) nest(sub string) {
	move := func(path string) string {
		for _, g := range p.Guest {
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
		if isBind(m) {
			mounts[i].Source = move(m.Source)
		}
	}
	p.Spec.Mounts = mounts
}
