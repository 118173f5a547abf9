package container

import (
	"fmt"
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

// guestNetFD is the guest's network namespace, kept by a zygote that
// made one of its own (premakeNetwork); -1 in any other process.
var guestNetFD = -1

// premakeNetwork is the zygote's: before it waits (in a VM template, once
// for every clone) it enters a network namespace of its own with loopback
// up, the one a sandbox without networking gives its container, which
// takes ~40 ms of a container's creation under TCG. A container that shares
// the guest's namespace goes back to it (useNetwork). On failure the
// zygote stays in the guest's, as if it had never tried.
func premakeNetwork() {
	fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	guest, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, zygoteNetFD)
	unix.Close(fd)
	if err != nil {
		return
	}
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		unix.Close(guest)
		return
	}
	if err := LoopbackUp(); err != nil {
		if err := unix.Setns(guest, unix.CLONE_NEWNET); err != nil {
			os.Exit(1) // neither namespace is usable: the agent forks instead
		}
		unix.Close(guest)
		return
	}
	guestNetFD = guest
}

// useNetwork puts this thread in the network namespace the spec's
// container gets: one of its own, loopback only (own), or the guest's. A
// zygote's init has one of its own already (premakeNetwork).
func useNetwork(own bool) error {
	if guestNetFD >= 0 {
		defer func() {
			unix.Close(guestNetFD)
			guestNetFD = -1
		}()
		if own {
			return nil
		}
		if err := unix.Setns(guestNetFD, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("enter the guest's network namespace: %w", err)
		}
		return nil
	}
	if !own {
		return nil
	}
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("new network namespace: %w", err)
	}
	if err := LoopbackUp(); err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	return nil
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
