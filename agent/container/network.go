package container

import (
	"os"

	"golang.org/x/sys/unix"
)

// LoopbackUp sets lo up in the calling thread's network namespace: the
// guest's, which containers of a networked sandbox share, or a container's
// own. Many programs expect 127.0.0.1 to work.
func LoopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// GuestHasNICs reports whether the agent's network namespace, the guest's,
// has an interface besides lo.
func GuestHasNICs() bool {
	ents, err := os.ReadDir("/sys/class/net")
	if err != nil {
		return true // unknown: hide whatever there may be
	}
	for _, e := range ents {
		if e.Name() != "lo" {
			return true
		}
	}
	return false
}
