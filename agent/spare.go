package agent

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NICs nobody asked for are parked in a network namespace of their own, so
// that a container without networking sees loopback only (as runc gives an
// empty namespace), even in a VM restored from a template, which always
// carries a NIC slot. ConfigureNetwork takes the NICs it needs back.

// spareNS holds the parked NICs; -1 when it could not be made.
var spareNS netns.NsHandle = -1

// parkNICs moves every NIC of the guest's namespace into spareNS.
func parkNICs() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	root, err := netns.Get()
	if err != nil {
		return fmt.Errorf("current network namespace: %w", err)
	}
	defer root.Close()
	ns, err := netns.New() // also enters it
	if err != nil {
		return fmt.Errorf("spare network namespace: %w", err)
	}
	if err := netns.Set(root); err != nil {
		// This thread is lost to the wrong namespace: let it die with
		// the lock held rather than serve other goroutines.
		runtime.Goexit()
	}
	spareNS = ns
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		if l.Attrs().Name == "lo" || l.Attrs().HardwareAddr == nil {
			continue
		}
		if err := netlink.LinkSetNsFd(l, int(ns)); err != nil {
			return fmt.Errorf("park %s: %w", l.Attrs().Name, err)
		}
	}
	return nil
}

// unparkNIC moves the parked NIC with MAC mac back into the guest's
// namespace; it reports false if no parked NIC has that MAC.
func unparkNIC(mac string) (bool, error) {
	if spareNS < 0 {
		return false, nil
	}
	// Route sockets only: the guest kernel has no XFRM to open one for.
	h, err := netlink.NewHandleAt(spareNS, unix.NETLINK_ROUTE)
	if err != nil {
		return false, err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return false, err
	}
	root, err := netns.GetFromPid(1)
	if err != nil {
		return false, err
	}
	defer root.Close()
	for _, l := range links {
		if l.Attrs().HardwareAddr.String() == mac {
			if err := h.LinkSetNsFd(l, int(root)); err != nil {
				return false, fmt.Errorf("take back %s: %w", l.Attrs().Name, err)
			}
			return true, nil
		}
	}
	return false, nil
}
