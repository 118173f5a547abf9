package hypervisor

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// virtio-fs: a VM's shares served by virtiofsd, one per share, over
// vhost-user. virtiofsd reads and writes the guest's RAM directly, so the
// RAM must be shared memory (a memfd here); a template clone, whose RAM
// is a private mapping of the template's file, cannot have it, and a VM
// with a vhost-user-fs device cannot be migrated (saved as a template).
// virtio-fs is therefore for VMs that boot cold; clones use 9p.
//
// virtiofsd faces the guest as the 9p proxy helper does and is confined
// the same way (fsjail.go): started by the guard, under its seccomp filter
// (no set-ID file, no device node) and no_new_privs, chrooted into its
// share (sandbox=chroot: it stays in the guard's mount namespace, so that
// binds made under a share later, a pod's containers, reach it), a
// read-only share bound read-only in a namespace of its own, and with the
// capabilities a file server needs minus CAP_SETFCAP and CAP_MKNOD (FIFOs
// need none). Extended attributes are off (its default): no file
// capability or trusted.* attribute can be set through it.

// FS names how a VM's shares reach the guest.
type FS string

const (
	FS9P     FS = "9p"
	FSVirtio FS = "virtio-fs"
)

// virtiofsdPaths are where distributions install virtiofsd outside PATH
// (the Rust one in /usr/libexec, QEMU's C one in /usr/lib/qemu).
var virtiofsdPaths = []string{"/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd", "/usr/libexec/qemu/virtiofsd"}

// Virtiofsd is virtiofsd's path, "" if this host has none.
func Virtiofsd() string {
	if p, err := exec.LookPath("virtiofsd"); err == nil {
		return p
	}
	for _, p := range virtiofsdPaths {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// VirtioFS says whether VMs started by this process can share files over
// virtio-fs, and if not why: virtiofsd runs as root, confined like the 9p
// helper, so it takes what confinement takes.
func VirtioFS() error {
	if !Confined() {
		return errors.New("virtio-fs needs VMs confined (skiff as root in the host's user namespace, QEMU's virtfs-proxy-helper, seccomp): virtiofsd would otherwise run unconfined")
	}
	if Virtiofsd() == "" {
		return fmt.Errorf("no virtiofsd in PATH or %s", strings.Join(virtiofsdPaths, ", "))
	}
	return nil
}

// virtiofsdArgs is virtiofsd's command line for share s, its listening
// socket at fd 3.
func virtiofsdArgs(bin string, s Share) []string {
	return []string{bin, "--fd=3",
		"-o", "source=" + fuseOptValue(s.HostPath),
		"-o", "sandbox=chroot",
		// Attributes and entries for a second: changes made on the host
		// to a volume reach the guest within that (9p cache=mmap: at
		// once, for ~1.5x the time per operation; GUEST-NOTES).
		"-o", "cache=auto",
		// A share spanning host filesystems (bind mounts below it)
		// shows each as a submount: no two files share an inode number.
		"-o", "announce_submounts",
		"-o", "modcaps=-setfcap:-mknod",
		"-o", "no_xattr",
		// The requests of a TCG guest come one at a time: workers
		// beyond a few only cost memory.
		"--thread-pool-size=2",
	}
}

// fuseOptValue escapes a value for FUSE's "-o a=b,c=d" syntax.
func fuseOptValue(s string) string {
	return strings.NewReplacer(`\`, `\\`, `,`, `\,`).Replace(s)
}

// vhostUserSocket makes the socket of one vhost-user device: a listening
// end for virtiofsd (it accepts one connection) and QEMU's end, already
// connected to it, so that QEMU, jailed, needs no path. The listening
// socket has a path only for the moment of the connect, in a directory
// only root can enter: nobody else can be the one connection virtiofsd
// accepts.
func vhostUserSocket() (listener, qemuEnd *os.File, err error) {
	dir, err := os.MkdirTemp("", "skiff-vfs-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	addr := &unix.SockaddrUnix{Name: filepath.Join(dir, "s")}
	lfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("vhost-user socket: %w", err)
	}
	listener = os.NewFile(uintptr(lfd), "vhost-user-listen")
	if err := unix.Bind(lfd, addr); err != nil {
		listener.Close()
		return nil, nil, fmt.Errorf("vhost-user socket: %w", err)
	}
	if err := unix.Listen(lfd, 1); err != nil {
		listener.Close()
		return nil, nil, fmt.Errorf("vhost-user socket: %w", err)
	}
	cfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		listener.Close()
		return nil, nil, fmt.Errorf("vhost-user socket: %w", err)
	}
	qemuEnd = os.NewFile(uintptr(cfd), "vhost-user")
	if err := unix.Connect(cfd, addr); err != nil {
		listener.Close()
		qemuEnd.Close()
		return nil, nil, fmt.Errorf("vhost-user socket: %w", err)
	}
	return listener, qemuEnd, nil
}

// sharedMemoryArgs backs the RAM of a VM sharing over virtio-fs with a
// memfd virtiofsd can map.
func sharedMemoryArgs(memMiB int) (backend []string, machineSuffix string) {
	return []string{"-object", fmt.Sprintf("memory-backend-memfd,id=mem,size=%dM,share=on", memMiB)}, ",memory-backend=mem"
}

// virtioFSArgs are the devices of c's shares over virtio-fs, each on the
// vhost-user socket the guard connected for it (shareFD).
func virtioFSArgs(c Config, bus string) []string {
	var a []string
	if bus == "device" {
		// virtiofsd refuses virtio-mmio's legacy mode, microvm's
		// default.
		a = append(a, "-global", "virtio-mmio.force-legacy=false")
	}
	for i, s := range c.Shares {
		id := "vfs" + strconv.Itoa(i)
		a = append(a, "-chardev", "socket,id="+id+",fd="+strconv.Itoa(shareFD(c.NetDevices, i)),
			"-device", "vhost-user-fs-"+bus+",chardev="+id+",tag="+s.Tag+",queue-size=1024")
	}
	return a
}
