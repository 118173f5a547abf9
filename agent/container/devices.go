package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// defaultDevices are the nodes every container gets when its /dev is a
// fresh tmpfs (the OCI runtime spec's list).
var defaultDevices = []specs.LinuxDevice{
	{Path: "/dev/null", Type: "c", Major: 1, Minor: 3},
	{Path: "/dev/zero", Type: "c", Major: 1, Minor: 5},
	{Path: "/dev/full", Type: "c", Major: 1, Minor: 7},
	{Path: "/dev/random", Type: "c", Major: 1, Minor: 8},
	{Path: "/dev/urandom", Type: "c", Major: 1, Minor: 9},
	{Path: "/dev/tty", Type: "c", Major: 5, Minor: 0},
}

func createDefaultDevices(root string) error {
	mode := os.FileMode(0o666)
	for _, d := range defaultDevices {
		d.FileMode = &mode
		if err := createDevice(root, d); err != nil {
			return err
		}
	}
	links := [][2]string{
		{"/proc/self/fd", "/dev/fd"},
		{"/proc/self/fd/0", "/dev/stdin"},
		{"/proc/self/fd/1", "/dev/stdout"},
		{"/proc/self/fd/2", "/dev/stderr"},
		{"pts/ptmx", "/dev/ptmx"},
	}
	for _, l := range links {
		dst, err := securePath(root, l[1])
		if err != nil {
			return err
		}
		if err := os.Symlink(l[0], dst); err != nil && !os.IsExist(err) {
			return fmt.Errorf("create %s: %w", l[1], err)
		}
	}
	return nil
}

func createDevice(root string, d specs.LinuxDevice) error {
	var typ uint32
	switch d.Type {
	case "c", "u":
		typ = unix.S_IFCHR
	case "b":
		typ = unix.S_IFBLK
	case "p":
		typ = unix.S_IFIFO
	default:
		return fmt.Errorf("device %s: unknown type %q", d.Path, d.Type)
	}
	dst, err := securePath(root, d.Path)
	if err != nil {
		return fmt.Errorf("device %s: %w", d.Path, err)
	}
	if err := createTarget(root, filepath.Dir(dst), true); err != nil {
		return fmt.Errorf("device %s: %w", d.Path, err)
	}
	perm := uint32(0o666)
	if d.FileMode != nil {
		perm = uint32(d.FileMode.Perm())
	}
	os.Remove(dst)
	old := unix.Umask(0)
	err = unix.Mknod(dst, typ|perm, int(unix.Mkdev(uint32(d.Major), uint32(d.Minor))))
	unix.Umask(old)
	if errors.Is(err, unix.EEXIST) {
		// What could not be removed stays, as runc leaves it: /dev/ptmx
		// of a privileged container's list resolves through the
		// pts/ptmx link to devpts's own node.
		return nil
	}
	if err != nil {
		return fmt.Errorf("create device %s: %w", d.Path, err)
	}
	uid, gid := 0, 0
	if d.UID != nil {
		uid = int(*d.UID)
	}
	if d.GID != nil {
		gid = int(*d.GID)
	}
	if err := unix.Lchown(dst, uid, gid); err != nil {
		return fmt.Errorf("chown device %s: %w", d.Path, err)
	}
	return nil
}

// fuseDevice is the guest kernel's /dev/fuse (misc 10:229).
var fuseDevice = specs.LinuxDevice{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229, FileMode: func() *os.FileMode { m := os.FileMode(0o666); return &m }()}

// needsFuse tells whether a container gets /dev/fuse though its spec does
// not list it: a privileged one, in which nested podman and buildah use
// fuse-overlayfs. The node is the guest kernel's: the host's /dev/fuse is
// never reached. podman --privileged lists it already; a Kubernetes
// privileged container lists the host's devices, which may lack it.
func needsFuse(spec *specs.Spec) bool {
	if spec.Process == nil || !protocol.Privileged(spec.Process.Capabilities) {
		return false
	}
	if spec.Linux != nil {
		for _, d := range spec.Linux.Devices {
			if filepath.Clean(d.Path) == fuseDevice.Path {
				return false
			}
		}
	}
	return true
}
