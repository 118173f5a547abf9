package hypervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// The jail: what QEMU runs in when skiff runs as root. The guard starts
// it with QEMU's own command line (so that it is listed, and found by its
// pidfile argument, as the QEMU it becomes) and the jail's spec in
// jailEnv; in its own mount namespace it
//
//   - builds a root of its own: a read-only tmpfs holding /usr, the boot
//     files (kernel, initrd, a template's memory file), its disks' image
//     files and the few character devices QEMU opens, each bound
//     read-only but the memory file and the disks; nothing of /run, /etc, /home, the state directories or the
//     container's files (QEMU reaches those only through the descriptors
//     and file servers it is handed);
//   - takes an identity of its own (VMID: one uid per VM, a group shared
//     by all VMs for the template files, kvm's group where KVM is used),
//     no capabilities in any set (the bounding set included), and
//     no_new_privs;
//   - and execs QEMU, which adds its own seccomp filter (-sandbox).
//
// Like Firecracker's jailer, it is plain code run before the VMM: it
// trusts nothing the guest sends because the guest has sent nothing yet.

// jailEnv carries the jail's spec (JSON) to the jail process.
const jailEnv = "SKIFF_VMM_JAIL"

// jailSpec is what the jail is told.
type jailSpec struct {
	UID, GID int
	Groups   []int
	Binds    []jailBind
	// PIDFile's directory becomes a small tmpfs QEMU may write its
	// pidfile to; the guard writes the one the host reads.
	PIDFile string
	// ErrFD is where the jail writes why it failed; exec closes it, so
	// the guard, reading it to its end, learns that QEMU runs.
	ErrFD int
}

// jailBind is a host path made visible at the same path in the jail.
// Link: the path is a symlink, recreated as one (/lib on merged /usr).
type jailBind struct {
	Path     string
	Writable bool
	Device   bool
	Optional bool
	Link     string
}

func init() {
	if spec := os.Getenv(jailEnv); spec != "" {
		os.Unsetenv(jailEnv)
		var s jailSpec
		err := json.Unmarshal([]byte(spec), &s)
		if err == nil {
			unix.CloseOnExec(s.ErrFD)
			err = runJail(s, os.Args)
		}
		msg := fmt.Sprintf("jail: %v\n", err)
		os.Stderr.WriteString(msg)
		if s.ErrFD > 2 {
			unix.Write(s.ErrFD, []byte(msg))
		}
		os.Exit(1)
	}
}

// runJail does the work described above and execs argv; it returns only
// on failure.
func runJail(s jailSpec, argv []string) error {
	// Mount namespace, credentials, the bounding set and no_new_privs
	// belong to the thread: the one that execs must be the one that set
	// them.
	runtime.LockOSThread()
	ppid := os.Getppid()
	if err := buildRoot(s); err != nil {
		return err
	}
	if err := dropIdentity(s); err != nil {
		return err
	}
	// The parent-death signal (set by the guard) is cleared when the
	// uid changes: set it again, and make sure the guard did not go
	// in between.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("parent-death signal: %w", err)
	}
	if os.Getppid() != ppid {
		return errors.New("the guard is gone")
	}
	if err := unix.Exec(argv[0], argv, os.Environ()); err != nil {
		return fmt.Errorf("exec %s: %w", argv[0], err)
	}
	return nil
}

// jailRoot is where the new root is assembled: any directory does, as the
// mount on it is this namespace's alone; the sources are opened first, so
// that it hiding something of the host's (a state root in /tmp) does not
// matter. The first of jailRoots the host has.
var jailRoot = func() string {
	for _, d := range []string{"/tmp", "/mnt", "/var/tmp", "/run"} {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return d
		}
	}
	return "/tmp"
}()

func buildRoot(s jailSpec) error {
	srcs := make([]*os.File, len(s.Binds))
	for i, b := range s.Binds {
		if b.Link != "" {
			continue
		}
		f, err := os.OpenFile(b.Path, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			if b.Optional && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return fmt.Errorf("open %s: %w", b.Path, err)
		}
		defer f.Close()
		srcs[i] = f
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := unix.Mount("tmpfs", jailRoot, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=1m"); err != nil {
		return fmt.Errorf("mount the jail's root: %w", err)
	}
	// The pidfile's directory first: a bound file in the same directory
	// (a template's memory file) goes inside it, not under it.
	if s.PIDFile != "" {
		dir := filepath.Join(jailRoot, filepath.Dir(s.PIDFile))
		opts := fmt.Sprintf("mode=0700,size=16k,uid=%d,gid=%d", s.UID, s.GID)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
			return fmt.Errorf("mount the pidfile's directory: %w", err)
		}
	}
	for i, b := range s.Binds {
		if err := jailMount(b, srcs[i]); err != nil {
			return err
		}
	}
	return pivot()
}

// jailMount makes b at its path under jailRoot from the opened source.
func jailMount(b jailBind, src *os.File) error {
	target := filepath.Join(jailRoot, b.Path)
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	if b.Link != "" {
		return os.Symlink(b.Link, target)
	}
	if src == nil { // optional and missing
		return nil
	}
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	if fi.IsDir() {
		err = os.Mkdir(target, 0o755)
	} else {
		err = os.WriteFile(target, nil, 0o644)
	}
	if err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	from := fmt.Sprintf("/proc/self/fd/%d", src.Fd())
	if err := unix.Mount(from, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", b.Path, err)
	}
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_NOSUID)
	if !b.Device {
		flags |= unix.MS_NODEV
	}
	if !b.Writable {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		return fmt.Errorf("remount %s: %w", b.Path, err)
	}
	return nil
}

// pivot makes jailRoot the root, forgets the old one, and makes the new
// one read-only.
func pivot() error {
	old := filepath.Join(jailRoot, ".old")
	if err := os.Mkdir(old, 0o700); err != nil {
		return err
	}
	if err := unix.PivotRoot(jailRoot, old); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Unmount("/.old", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the host's root: %w", err)
	}
	if err := os.Remove("/.old"); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("make the jail's root read-only: %w", err)
	}
	return nil
}

// dropIdentity becomes s.UID with no capability left anywhere.
func dropIdentity(s jailSpec) error {
	if err := unix.Setgroups(s.Groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := unix.Setresgid(s.GID, s.GID, s.GID); err != nil {
		return fmt.Errorf("setresgid: %w", err)
	}
	for c := 0; ; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			if errors.Is(err, unix.EINVAL) && c > 0 {
				break // past the last capability this kernel has
			}
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	// From uid 0 to another, with no keep-caps: the permitted and
	// effective sets empty.
	if err := unix.Setresuid(s.UID, s.UID, s.UID); err != nil {
		return fmt.Errorf("setresuid: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	return nil
}

// hostRootEntries are the host's top-level entries a dynamically linked
// QEMU may need besides /usr: on a merged-/usr system they are symlinks
// into it, elsewhere directories of their own.
var hostRootEntries = []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}

// jailBinds is what the jail of c shows QEMU.
func jailBinds(c Config) []jailBind {
	b := []jailBind{{Path: "/usr"}, {Path: "/etc/ld.so.cache", Optional: true}}
	for _, p := range hostRootEntries {
		if target, err := os.Readlink(p); err == nil {
			b = append(b, jailBind{Path: p, Link: target})
		} else if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			b = append(b, jailBind{Path: p})
		}
	}
	for _, d := range []string{"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"} {
		b = append(b, jailBind{Path: d, Device: true, Writable: true})
	}
	if c.Accel == AccelKVM {
		b = append(b, jailBind{Path: "/dev/kvm", Device: true, Writable: true})
	}
	files := []string{c.Binary}
	if bootsKernel(c) {
		files = append(files, c.Kernel, c.Initrd)
	}
	for _, f := range files {
		if !underDir(f, "/usr") {
			b = append(b, jailBind{Path: f})
		}
	}
	if c.MemoryFile != "" {
		b = append(b, jailBind{Path: c.MemoryFile, Writable: true})
	}
	for _, d := range c.Disks {
		if !d.Block { // a block device comes as descriptors
			b = append(b, jailBind{Path: d.Path, Writable: true})
		}
	}
	return b
}

func underDir(p, dir string) bool { return strings.HasPrefix(p, dir+"/") }
