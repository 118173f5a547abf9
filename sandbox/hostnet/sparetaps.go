package hostnet

import (
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/hypervisor"
)

// SpareTaps gives a template's NIC slots real taps instead of backend-less
// placeholders: virtio-net offers the guest the offloads (checksum, TSO)
// its backend supports, and a template negotiated without them would give
// every clone a NIC that cannot use them. The taps live in a network
// namespace of their own, connected to nothing; release closes them and
// lets that namespace go. It must outlive the VM's use of the taps.
//
// The taps are persistent: the last close of a non-persistent tap
// unregisters it on the spot, ~20 ms of waiting for RCU in the shim's
// teardown. A persistent one outlives its fds, and goes when its namespace
// does, in the kernel's own time: the namespace is held by nothing but the
// taps' fds (and release's handle), so it ends once the VMM and the shim
// closed them.
func SpareTaps(devs []hypervisor.NetDevice) (release func(), err error) {
	return SpareTapsPinned(devs, "")
}

// SpareTapsPinned is SpareTaps with the namespace also bind-mounted on pin
// (when not ""), where it outlives this process: a pooled VM's taps wait
// there for the sandbox that takes the VM (see the factory's pool).
func SpareTapsPinned(devs []hypervisor.NetDevice, pin string) (release func(), err error) {
	var taps []*os.File
	var ns netns.NsHandle = -1
	release = func() {
		for _, t := range taps {
			t.Close()
		}
		if ns >= 0 {
			ns.Close()
		}
	}
	err = onNetNSThread(func() error {
		var err error
		if ns, err = netns.New(); err != nil { // and enter it
			return fmt.Errorf("network namespace for spare taps: %w", err)
		}
		return nil
	}, func() error {
		if pin != "" {
			if err := pinNetNS(pin); err != nil {
				return err
			}
		}
		for k := range devs {
			if !devs[k].Placeholder {
				continue
			}
			t, err := openTap(fmt.Sprintf("spare%d", k))
			if err == nil {
				err = persist(t)
			}
			if err != nil {
				return err
			}
			taps = append(taps, t)
			devs[k].Tap, devs[k].Placeholder = t, false
		}
		return nil
	})
	if err != nil {
		release()
		return nil, err
	}
	return release, nil
}

// persist makes the tap of t outlive its fds.
func persist(t *os.File) error {
	if err := unix.IoctlSetInt(int(t.Fd()), unix.TUNSETPERSIST, 1); err != nil {
		return fmt.Errorf("make spare tap persistent: %w", err)
	}
	return nil
}

// pinNetNS bind-mounts the calling thread's network namespace on path.
func pinNetNS(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	f.Close()
	if err := unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), path, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("pin network namespace on %s: %w", path, err)
	}
	return nil
}

// BringFrom is the BringTap of a pooled VM whose spare taps wait in the
// network namespace pinned at pin: it moves tap "spareK" from there into
// the current namespace, renamed.
func BringFrom(pin string) BringTap {
	return func(k int, name string) error {
		ns, err := netns.GetFromPath(pin)
		if err != nil {
			return fmt.Errorf("pooled VM's network namespace: %w", err)
		}
		defer ns.Close()
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			return err
		}
		defer h.Close()
		spare := fmt.Sprintf("spare%d", k)
		l, err := h.LinkByName(spare)
		if err != nil {
			return fmt.Errorf("pooled VM's tap %s: %w", spare, err)
		}
		here, err := netns.Get()
		if err != nil {
			return err
		}
		defer here.Close()
		if err := h.LinkSetNsFd(l, int(here)); err != nil {
			return fmt.Errorf("move tap %s into the sandbox's namespace: %w", spare, err)
		}
		l, err = netlink.LinkByName(spare)
		if err == nil {
			err = netlink.LinkSetName(l, name)
		}
		if err != nil {
			return fmt.Errorf("rename tap %s to %s: %w", spare, name, err)
		}
		return nil
	}
}
