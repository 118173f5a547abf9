package agent

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agent/container"
	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// warmDir is where warm mounts its share for a moment.
const warmDir = "/run/skiff/warm"

// warm goes once through what creating a container does in the guest, so
// that a pooled VM has the guest code of that path translated before its
// sandbox comes (protocol.MethodWarm). Decoding the request has already
// gone through the spec's types.
func (a *Agent) warm(req *protocol.WarmRequest) (*protocol.WarmResponse, error) {
	if req.Spec != nil {
		if err := container.Warm(req.Spec); err != nil {
			return nil, err
		}
	}
	preloadScratchModules(a.log)
	if req.Scratch != nil {
		if err := a.holdScratch(req.Scratch); err != nil {
			return nil, fmt.Errorf("warm: %w", err)
		}
	}
	var resp protocol.WarmResponse
	if req.Run && req.Spec != nil {
		ran, err := a.warmRun(req.Spec)
		if err != nil {
			return nil, fmt.Errorf("warm: %w", err)
		}
		resp.Ran = ran
	}
	if req.Share.Tag == "" {
		return &resp, nil
	}
	s := req.Share
	s.GuestPath = warmDir
	if err := a.touchShare(s); err != nil {
		return nil, err
	}
	return &resp, nil
}

// warmBinary is what the throwaway container runs: the guest's busybox,
// which the agent keeps reachable (keepGuestBin).
const warmBinary = "/bin/busybox"

// warmRun runs a throwaway container of spec, on a scratch root that
// holds the guest's /bin, with its busybox as the program, through the
// zygote, and waits for its end; then a new zygote takes the used one's
// place. The sandbox's container comes later to a guest whose code for
// all that is translated (protocol.WarmRequest.Run). It reports whether
// the container ran.
func (a *Agent) warmRun(spec *specs.Spec) (ran bool, err error) {
	if _, err := os.Stat(warmBinary); err != nil {
		return false, nil // nothing to run: the rest of the warm-up still holds
	}
	a.mu.Lock()
	busy := len(a.containers) > 0 || len(a.shares) > 0
	a.mu.Unlock()
	if busy {
		return false, errors.New("the guest is in use")
	}
	root, err := warmRoot()
	if err != nil {
		return false, err
	}
	defer unix.Unmount(root, unix.MNT_DETACH)
	s := *spec
	s.Root = &specs.Root{Path: root, Readonly: true}
	p := *spec.Process
	p.Args, p.Terminal, p.Cwd = []string{warmBinary, "true"}, false, "/"
	s.Process = &p
	s.Hooks = nil
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return false, err
	}
	defer null.Close()
	c, err := a.newContainer(warmID, &s, nil, [3]*os.File{null, null, null})
	// Whatever happens below, the sandbox's container must find a zygote
	// waiting, as in any other guest.
	defer func() {
		if zerr := a.replaceZygote(); err == nil {
			err = zerr
		}
	}()
	if err != nil {
		return false, err
	}
	if err := c.Start(); err != nil {
		c.Signal(unix.SIGKILL, true)
	}
	<-c.Done()
	c.RemoveCgroup()
	if st := c.ExitStatus(); st != 0 {
		return false, fmt.Errorf("throwaway container exited %d", st)
	}
	if err := warmNetwork(); err != nil {
		return false, fmt.Errorf("network: %w", err)
	}
	return true, nil
}

// warmNetwork goes through what ConfigureNetwork does to a NIC (list the
// links, rename one, set its MAC, an address, up, a route through a
// gateway) on a veth pair, in a network namespace of a thread's own that
// goes away with the thread: nothing of it stays in the guest. A guest
// that cannot make a veth pair skips it.
func warmNetwork() error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine, and its
		// network namespace with it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- func() error {
			if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "skiffwarm0"}, PeerName: "skiffwarm1"}); err != nil {
				// A guest kernel without veth (Debian's stock
				// kernel has it as a module the guest does not
				// load): nothing to warm up with.
				return nil
			}
			if _, err := netlink.LinkList(); err != nil {
				return err
			}
			l, err := netlink.LinkByName("skiffwarm0")
			if err != nil {
				return err
			}
			if err := renameNICs([]protocol.Interface{{Name: "skiffwarm2"}}, []netlink.Link{l}); err != nil {
				return err
			}
			ifc := protocol.Interface{Name: "skiffwarm2", MAC: "02:73:6b:ff:ff:01", MTU: 1400, Addresses: []string{"10.255.255.1/30"}}
			if err := configureNIC(ifc, l); err != nil {
				return err
			}
			// The peer is down, so the route may be refused: the
			// way there is what counts.
			addRoute(protocol.Route{Family: 4, Device: "skiffwarm2", Gateway: "10.255.255.2"})
			return nil
		}()
	}()
	return <-errc
}

// warmRoot mounts the throwaway container's root: a tmpfs with the mount
// points a spec's mounts need and the guest's /bin, read-only.
func warmRoot() (string, error) {
	const root = "/run/skiff/warm-root"
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=1m"); err != nil {
		return "", err
	}
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp", "etc"} {
		if err := os.Mkdir(root+"/"+d, 0o755); err != nil {
			unix.Unmount(root, unix.MNT_DETACH)
			return "", err
		}
	}
	if err := unix.Mount("/bin", root+"/bin", "", unix.MS_BIND, ""); err != nil {
		unix.Unmount(root, unix.MNT_DETACH)
		return "", err
	}
	return root, nil
}

// warmID names the throwaway container: not an ID the host can give (it
// starts with '-'), so it never meets a sandbox's.
const warmID = "-warm-run"

// replaceZygote starts a zygote if the guest has none (its zygote went to
// a throwaway container) and waits until it waits.
func (a *Agent) replaceZygote() error {
	if err := a.startZygote(); err != nil {
		return err
	}
	a.waitZygote()
	return nil
}
