package sandbox

import (
	"fmt"
	"os"
	"runtime"

	"github.com/vishvananda/netns"

	"github.com/skiff-oci/skiff/hypervisor"
)

// spareTaps gives a template's NIC slots real taps instead of backend-less
// placeholders: virtio-net offers the guest the offloads (checksum, TSO)
// its backend supports, and a template negotiated without them would give
// every clone a NIC that cannot use them. The taps live in a network
// namespace of their own, connected to nothing; release closes them and
// lets that namespace go. It must outlive the VM's use of the taps.
func spareTaps(devs []hypervisor.NetDevice) (release func(), err error) {
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
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		ns, err = netns.New() // and enter it
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("network namespace for spare taps: %w", err)
			return
		}
		var terr error
		for k := range devs {
			if !devs[k].Placeholder {
				continue
			}
			t, err := openTap(fmt.Sprintf("spare%d", k))
			if err != nil {
				terr = err
				break
			}
			taps = append(taps, t)
			devs[k].Tap, devs[k].Placeholder = t, false
		}
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		} // else the goroutine ends locked and Go retires the thread
		errc <- terr
	}()
	if err := <-errc; err != nil {
		release()
		return nil, err
	}
	return release, nil
}
