package container

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// mountOpts is an OCI mount's options split into what mount(2) takes.
type mountOpts struct {
	flags       uintptr // flags for the first mount
	bind        bool
	recursive   bool
	remount     uintptr // per-mount flags to apply by a bind remount (ro, nosuid, ...)
	propagation uintptr // MS_PRIVATE, MS_SLAVE, ... with MS_REC if r-prefixed
	data        string  // filesystem-specific options, comma-joined
	// copyUp (runc's "tmpcopyup", which podman passes for --tmpfs) fills a
	// new tmpfs with what the directory it covers held.
	copyUp bool
}

var flagOpts = map[string]struct {
	clear bool
	flag  uintptr
}{
	"ro": {false, unix.MS_RDONLY}, "rw": {true, unix.MS_RDONLY},
	"nosuid": {false, unix.MS_NOSUID}, "suid": {true, unix.MS_NOSUID},
	"nodev": {false, unix.MS_NODEV}, "dev": {true, unix.MS_NODEV},
	"noexec": {false, unix.MS_NOEXEC}, "exec": {true, unix.MS_NOEXEC},
	"sync": {false, unix.MS_SYNCHRONOUS}, "async": {true, unix.MS_SYNCHRONOUS},
	"dirsync": {false, unix.MS_DIRSYNC}, "mand": {false, unix.MS_MANDLOCK},
	"nomand": {true, unix.MS_MANDLOCK}, "noatime": {false, unix.MS_NOATIME},
	"atime": {true, unix.MS_NOATIME}, "nodiratime": {false, unix.MS_NODIRATIME},
	"diratime": {true, unix.MS_NODIRATIME}, "relatime": {false, unix.MS_RELATIME},
	"norelatime": {true, unix.MS_RELATIME}, "strictatime": {false, unix.MS_STRICTATIME},
	"nostrictatime": {true, unix.MS_STRICTATIME},
	"defaults":      {false, 0},
}

var propagationOpts = map[string]uintptr{
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC,
	"shared": unix.MS_SHARED, "rshared": unix.MS_SHARED | unix.MS_REC,
	"slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
	"unbindable": unix.MS_UNBINDABLE, "runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// parseMountOptions splits OCI mount options (fstab words) into flags,
// propagation and the data string. Unknown words are filesystem data
// (mode=, size=, newinstance, ptmxmode=, ...).
func parseMountOptions(typ string, options []string) mountOpts {
	var o mountOpts
	var data []string
	for _, opt := range options {
		switch opt {
		case "bind":
			o.bind = true
			continue
		case "rbind":
			o.bind, o.recursive = true, true
			continue
		case "tmpcopyup":
			o.copyUp = true
			continue
		}
		if strings.HasPrefix(opt, "X-") || strings.HasPrefix(opt, "x-") {
			continue // userspace options (fstab's X-...): not for the kernel
		}
		if p, ok := propagationOpts[opt]; ok {
			o.propagation = p
			continue
		}
		if f, ok := flagOpts[opt]; ok {
			if f.clear {
				o.flags &^= f.flag
			} else {
				o.flags |= f.flag
			}
			continue
		}
		data = append(data, opt)
	}
	if typ == "bind" {
		o.bind = true
	}
	if o.bind {
		// A bind mount ignores these flags on the first call: they take a
		// remount of the new bind.
		o.remount = o.flags & (unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV |
			unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME | unix.MS_STRICTATIME)
		o.flags = unix.MS_BIND
		if o.recursive {
			o.flags |= unix.MS_REC
		}
		data = nil
	}
	o.data = strings.Join(data, ",")
	return o
}

// setupRootfs builds the container's root from spec and pivots into it.
func setupRootfs(spec *specs.Spec, root string) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind rootfs %s: %w", root, err)
	}
	devIsTmpfs := false
	for _, m := range spec.Mounts {
		if err := mountOne(root, m); err != nil {
			return err
		}
		if filepath.Clean(m.Destination) == "/dev" && m.Type == "tmpfs" {
			devIsTmpfs = true
		}
	}
	if devIsTmpfs {
		if err := createDefaultDevices(root); err != nil {
			return err
		}
	}
	if spec.Linux != nil {
		for _, d := range spec.Linux.Devices {
			if err := createDevice(root, d); err != nil {
				return err
			}
		}
	}
	if needsFuse(spec) {
		if err := createDevice(root, fuseDevice); err != nil {
			return err
		}
	}
	if err := pivot(root); err != nil {
		return err
	}
	if spec.Linux != nil && spec.Linux.RootfsPropagation != "" {
		p, ok := propagationOpts[spec.Linux.RootfsPropagation]
		if !ok {
			return fmt.Errorf("unknown rootfsPropagation %q", spec.Linux.RootfsPropagation)
		}
		if err := unix.Mount("", "/", "", p, ""); err != nil {
			return fmt.Errorf("set rootfs propagation: %w", err)
		}
	}
	if spec.Root.Readonly {
		if err := remountBind("/", unix.MS_RDONLY); err != nil {
			return fmt.Errorf("make rootfs read-only: %w", err)
		}
	}
	if spec.Linux != nil {
		for k, v := range spec.Linux.Sysctl {
			// The guest kernel is the container's own: any sysctl is its business.
			p := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
			if strings.Contains(k, "/") || strings.Contains(k, "..") {
				return fmt.Errorf("invalid sysctl %q", k)
			}
			if err := os.WriteFile(p, []byte(v), 0); err != nil {
				return fmt.Errorf("set sysctl %s=%s: %w", k, v, err)
			}
		}
		for _, p := range spec.Linux.MaskedPaths {
			maskPath(p)
		}
		for _, p := range spec.Linux.ReadonlyPaths {
			readonlyPath(p)
		}
	}
	return nil
}

func mountOne(root string, m specs.Mount) error {
	o := parseMountOptions(m.Type, m.Options)
	dest, err := securePath(root, m.Destination)
	if err != nil {
		return fmt.Errorf("mount %s: %w", m.Destination, err)
	}
	typ := m.Type
	if o.bind {
		typ = ""
		fi, err := os.Stat(m.Source)
		if err != nil {
			return fmt.Errorf("bind mount source %s: %w", m.Source, unwrapPath(err))
		}
		if err := createTarget(root, dest, fi.IsDir()); err != nil {
			return fmt.Errorf("create mount target %s: %w", m.Destination, err)
		}
	} else {
		if err := createTarget(root, dest, true); err != nil {
			return fmt.Errorf("create mount target %s: %w", m.Destination, err)
		}
	}
	if typ == "cgroup" || typ == "cgroup2" {
		// The guest has cgroup v2 alone, whatever the host has: a v1
		// mount (podman's on a v1 host) gets the v2 tree. It is the
		// container's own cgroup with a cgroup namespace (setup made
		// it), the guest's whole tree without. A guest without cgroup2
		// runs the container without /sys/fs/cgroup, with a warning.
		err := unix.Mount("cgroup2", dest, "cgroup2", o.flags, "")
		if err != nil {
			warnf("skipping cgroup mount at %s: %v", m.Destination, err)
		}
		return nil
	}
	src := m.Source
	if src == "" {
		src = typ
	}
	if o.copyUp && typ == "tmpfs" {
		if err := mountCopyUp(dest, o); err != nil {
			return fmt.Errorf("mount tmpfs on %s with copy-up: %w", m.Destination, err)
		}
	} else if err := unix.Mount(src, dest, typ, o.flags, o.data); err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", m.Source, m.Type, m.Destination, err)
	}
	if o.bind && o.remount != 0 {
		if err := remountBind(dest, o.remount); err != nil {
			return fmt.Errorf("remount %s with %v: %w", m.Destination, m.Options, err)
		}
	}
	if o.propagation != 0 {
		if err := unix.Mount("", dest, "", o.propagation, ""); err != nil {
			return fmt.Errorf("set propagation of %s: %w", m.Destination, err)
		}
	}
	return nil
}

// remountBind adds flags to a bind mount, keeping the flags it already has
// (a remount replaces them all).
func remountBind(path string, add uintptr) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return err
	}
	have := uintptr(0)
	for _, f := range []struct{ st, ms uintptr }{
		{unix.ST_RDONLY, unix.MS_RDONLY}, {unix.ST_NOSUID, unix.MS_NOSUID},
		{unix.ST_NODEV, unix.MS_NODEV}, {unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_NOATIME, unix.MS_NOATIME}, {unix.ST_NODIRATIME, unix.MS_NODIRATIME},
		{unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if uintptr(st.Flags)&f.st != 0 {
			have |= f.ms
		}
	}
	return unix.Mount("", path, "", unix.MS_BIND|unix.MS_REMOUNT|have|add, "")
}

// createTarget makes the mount point: a directory, or an empty file for a
// file bind. dest was resolved inside root, so what is missing of it holds
// no symlink.
func createTarget(root, dest string, dir bool) error {
	if !strings.HasPrefix(dest, root) {
		return errors.New("target escapes the rootfs")
	}
	if dir {
		return os.MkdirAll(dest, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(dest, os.O_CREATE|unix.O_NOFOLLOW|os.O_RDONLY, 0o644)
	if err != nil {
		if errors.Is(err, unix.EISDIR) {
			return nil
		}
		return err
	}
	return f.Close()
}

// pivot makes root the process's / and detaches the old root entirely.
func pivot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return fmt.Errorf("chdir to rootfs: %w", err)
	}
	// pivot_root(".", ".") stacks the old root on top of the new one; the
	// detach below then removes it, leaving no path back to the guest.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root into %s: %w", root, err)
	}
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make old root slave: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	return unix.Chdir("/")
}

// maskPath hides p: an empty read-only tmpfs over a directory, /dev/null
// over anything else. Best effort, as in runc: a missing path is fine.
func maskPath(p string) {
	fi, err := os.Stat(p)
	if err != nil {
		return
	}
	if fi.IsDir() {
		unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "")
		return
	}
	unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
}

func readonlyPath(p string) {
	if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return
	}
	remountBind(p, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC)
}

// mountCopyUp mounts a tmpfs aside, copies dest's content into it, and
// moves it onto dest, so the container finds the directory as it was,
// writable and private to it.
func mountCopyUp(dest string, o mountOpts) error {
	stage, err := os.MkdirTemp("", "tmpcopyup")
	if err != nil {
		return err
	}
	defer os.Remove(stage)
	if err := unix.Mount("tmpfs", stage, "tmpfs", o.flags, o.data); err != nil {
		return err
	}
	if err := copyTree(dest, stage); err != nil {
		unix.Unmount(stage, unix.MNT_DETACH)
		return err
	}
	if err := unix.Mount(stage, dest, "", unix.MS_MOVE, ""); err != nil {
		unix.Unmount(stage, unix.MNT_DETACH)
		return err
	}
	return nil
}

// copyTree copies directories, regular files and symlinks from src into
// dst with their modes and owners; other file types are skipped.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "." {
			return nil // the tmpfs root keeps the mode its options gave
		}
		to := filepath.Join(dst, rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st, _ := fi.Sys().(*syscall.Stat_t)
		switch {
		case fi.IsDir():
			if err := os.Mkdir(to, fi.Mode().Perm()); err != nil {
				return err
			}
			os.Chmod(to, fi.Mode()&(fs.ModePerm|fs.ModeSticky|fs.ModeSetuid|fs.ModeSetgid))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, to); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if err := copyFile(p, to, fi.Mode().Perm()); err != nil {
				return err
			}
		default:
			return nil
		}
		if st != nil {
			os.Lchown(to, int(st.Uid), int(st.Gid))
		}
		return nil
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
