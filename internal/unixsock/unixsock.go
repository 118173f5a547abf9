// Package unixsock dials and listens on unix sockets whatever the length
// of their path. sun_path holds 107 bytes; a state root and a 64-character
// container ID (containerd's) easily pass that. A longer path is reached
// through /proc/self/fd/N/NAME, N an O_PATH descriptor of its directory,
// which the kernel resolves like any path. It imports nothing of skiff's.
package unixsock

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// maxPath is the longest path sun_path takes with its terminating NUL.
const maxPath = 107

// short calls fn with a path naming the same socket as path, no longer
// than maxPath.
func short(path string, fn func(string) error) error {
	if len(path) <= maxPath {
		return fn(path)
	}
	dir, name := filepath.Split(path)
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(fd)
	p := "/proc/self/fd/" + strconv.Itoa(fd) + "/" + name
	if len(p) > maxPath {
		return fmt.Errorf("socket name %q is too long", name)
	}
	return fn(p)
}

// Dial connects to the unix socket at path.
func Dial(ctx context.Context, path string) (*net.UnixConn, error) {
	var conn net.Conn
	err := short(path, func(p string) error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, "unix", p)
		return err
	})
	if err != nil {
		return nil, err
	}
	return conn.(*net.UnixConn), nil
}

// Listen listens on a new unix socket at path.
func Listen(path string) (*net.UnixListener, error) {
	var ln *net.UnixListener
	err := short(path, func(p string) error {
		var err error
		ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
		return err
	})
	if err != nil {
		return nil, err
	}
	// The name was only a way to reach the directory: removing the socket
	// at close is the caller's business.
	ln.SetUnlinkOnClose(false)
	return ln, nil
}
