package commands

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/sandbox/shimctl"
)

// A shim's main thread enters the network namespace shimctl.NetNSEnv
// names: tools that inspect a container's namespaces read /proc/PID/ns/net
// of the host process standing for it (the thread group leader's), and a
// pod's containers name their sandbox's as /proc/<its PID>/ns/net.

// netnsErr is why the shim could not enter its namespace; it logs it.
var netnsErr error

// Package initialisation runs on the main thread; locking it there keeps
// the main goroutine on it for good, so that the namespace entered here is
// the one /proc/PID/ns/net shows.
func init() {
	path := os.Getenv(shimctl.NetNSEnv)
	if path == "" {
		return
	}
	os.Unsetenv(shimctl.NetNSEnv)
	runtime.LockOSThread()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		netnsErr = fmt.Errorf("network namespace %s: %w", path, err)
		return
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		netnsErr = fmt.Errorf("enter network namespace %s: %w", path, err)
	}
}
