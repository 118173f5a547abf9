package hypervisor

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/skiff-oci/skiff/internal/seccomp"
	"github.com/skiff-oci/skiff/internal/userns"
	"golang.org/x/sys/unix"
)

// The guest's files are served by QEMU's virtfs-proxy-helper, one per
// share, outside QEMU: QEMU, unprivileged, forwards each 9p request over a
// socket, and the helper, chrooted into its export, performs it with the
// few capabilities a file server needs (chown, dac_override, fowner,
// fsetid, setuid/setgid for the caller's fsuid, mknod). It faces the guest
// as much as QEMU does, so it is confined: chrooted into its export (it
// does that itself), under the seccomp filter of internal/seccomp (which
// the guard installs on itself before starting it, so that it inherits
// it), and for a read-only share through a jail (fsJailArgv0) that binds
// the export read-only in a mount namespace of its own. No file it makes
// or changes is ever set-user-ID or set-group-ID, and it makes no device
// node, whatever the guest asks. It has no CAP_SETFCAP or CAP_SYS_ADMIN,
// so neither file capabilities nor trusted.* attributes reach the host.

const fsJailArgv0 = "skiff-fs-jail"

// proxyHelperPaths are where QEMU packages install the helper.
var proxyHelperPaths = []string{
	"/usr/lib/qemu/virtfs-proxy-helper",
	"/usr/libexec/virtfs-proxy-helper",
	"/usr/libexec/qemu/virtfs-proxy-helper",
	"/usr/local/libexec/virtfs-proxy-helper",
}

// ProxyHelper is the 9p proxy helper's path, "" if this host has none.
func ProxyHelper() string {
	for _, p := range proxyHelperPaths {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// Confined reports whether VMs started by this process run jailed: QEMU
// under an identity of its own, without capabilities, and files served
// out of process. That takes root (to make the jail) and the proxy helper
// (QEMU without capabilities cannot serve a root-owned rootfs itself).
func Confined() bool {
	return os.Geteuid() == 0 && InitialUserNS() && ProxyHelper() != "" && seccomp.Supported()
}

// InitialUserNS reports whether this process is in the host's user
// namespace: root in another one (rootless podman's) cannot take the
// VMs' IDs, which that namespace does not map.
func InitialUserNS() bool { return userns.Initial() }

func init() {
	if filepath.Base(os.Args[0]) == fsJailArgv0 {
		err := runFSJail(os.Args[1:])
		fmt.Fprintf(os.Stderr, "%s: %v\n", fsJailArgv0, err)
		os.Exit(1)
	}
}

// runFSJail: args are the export, then the file server's argv; the
// server's socket is fd 3. It binds the export read-only in the mount
// namespace of its own it runs in (startFileServers), so that a server
// that forwards writes to a read-only share (it should refuse them) still
// gets EROFS, and execs the server. It returns only on failure.
func runFSJail(args []string) error {
	runtime.LockOSThread()
	if len(args) < 2 {
		return fmt.Errorf("bad arguments %q", args)
	}
	export, argv := args[0], args[1:]
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := unix.Mount(export, export, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", export, err)
	}
	if err := unix.Mount("", export, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("make %s read-only: %w", export, err)
	}
	// The guard's seccomp filter and no_new_privs are inherited
	// (startFileServers): the server execs under them.
	return unix.Exec(argv[0], argv, []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"})
}

// fileServer is how one share is served: its server's command line (its
// socket at fd 3), and the socket's two ends, QEMU's and the server's.
func (p *guardPlan) fileServer(s Share) (argv []string, qemuEnd, serverEnd *os.File, err error) {
	if p.Virtiofsd != "" {
		l, q, err := vhostUserSocket()
		return virtiofsdArgs(p.Virtiofsd, s), q, l, err
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("file server socket: %w", err)
	}
	q, h := os.NewFile(uintptr(pair[0]), "9p-proxy"), os.NewFile(uintptr(pair[1]), "9p-proxy")
	return []string{p.Helper, "-p", s.HostPath, "-f", "3", "-n"}, q, h, nil
}

// startFileServers starts one confined file server per share (the 9p
// helper, or virtiofsd) and returns QEMU's ends of their sockets, in
// share order. The servers die with the guard (parent-death signal from
// this locked thread) and with QEMU (their socket ends).
func startFileServers(p *guardPlan, log *os.File) (qemuEnds []*os.File, cmds []*exec.Cmd, err error) {
	defer func() {
		if err != nil {
			closeFiles(qemuEnds)
			stopFileServers(cmds)
			qemuEnds, cmds = nil, nil
		}
	}()
	for _, s := range p.Shares {
		argv, q, h, err := p.fileServer(s)
		if err != nil {
			return qemuEnds, cmds, fmt.Errorf("share %s: %w", s.Tag, err)
		}
		qemuEnds = append(qemuEnds, q)
		// A writable share's server is started here: it inherits the
		// guard's filter (the guard installed it on itself, guard.go),
		// and stays in the guard's mount namespace, since mounts made
		// under its share later (a pooled VM's slots, a pod's
		// containers) must reach it and this host's mounts may not
		// propagate to a namespace of its own. A read-only one goes
		// through the jail, for its read-only bind in a namespace of
		// its own.
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if s.ReadOnly {
			cmd = &exec.Cmd{Path: "/proc/self/exe", Args: append([]string{fsJailArgv0, s.HostPath}, argv...)}
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Cloneflags: syscall.CLONE_NEWNS}
		}
		cmd.Stdout, cmd.Stderr = log, log
		cmd.ExtraFiles = []*os.File{h}
		err = cmd.Start()
		h.Close()
		if err != nil {
			return qemuEnds, cmds, fmt.Errorf("start the file server of share %s: %w", s.Tag, err)
		}
		cmds = append(cmds, cmd)
	}
	return qemuEnds, cmds, nil
}

// stopFileServers kills and reaps the helpers.
func stopFileServers(cmds []*exec.Cmd) {
	for _, c := range cmds {
		c.Process.Kill()
		c.Wait()
	}
}
