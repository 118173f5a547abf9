// Package hostnet connects a sandbox's VM to the network namespace its
// spec names, and undoes that. It returns what the VM needs (taps) and
// what the guest's agent must be told (addresses, routes), never calling
// the agent itself. It is host plumbing: it must not import hostfs,
// hostcgroup, the factory, the shim or the state store.
//
// The "tcfilter" model: the caller (podman, a CNI plugin, a
// script with `ip netns`) hands over a network namespace with interfaces
// in it. For each interface skiff creates a tap in that namespace, gives
// the VM a virtio-net NIC on the tap with the interface's MAC, and joins
// the two with tc: whatever arrives on the interface is redirected out of
// the tap into the VM, and whatever the VM sends is redirected out of the
// interface. The guest then takes the interface's addresses and routes, so
// nothing outside the namespace sees a difference. Teardown removes the
// taps and filters and leaves the namespace as it was handed over.
package hostnet

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"

	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agentclient/protocol"
	"github.com/skiff-oci/skiff/hypervisor"
)

// Network models (config runtime.network_model).
const (
	NetworkTCFilter = "tcfilter"
	NetworkNone     = "none"
)

// tapPattern matches the taps skiff creates; nothing else is ever deleted.
var tapPattern = regexp.MustCompile(`^tap[0-9]+_skiff$`)

// filterPriority marks skiff's tc filters, so that teardown deletes those
// and no other filter the namespace's owner may have put on a link.
const filterPriority = 0x5f1f

// ingressParent is the parent handle of filters on the ingress qdisc.
var ingressParent = netlink.MakeHandle(0xffff, 0)

// netRecord is network.json in the state directory: what teardown must
// undo, written before anything is created so that `delete --force` after
// a crash at any point finds it.
type netRecord struct {
	NetNS string `json:"netns"`
	// Taps are the taps skiff created in the namespace.
	Taps []string `json:"taps,omitempty"`
	// Links carry skiff's ingress filter redirecting to a tap.
	Links []string `json:"links,omitempty"`
	// Ingress are the links that had no ingress qdisc before skiff added
	// one; only those lose it at teardown.
	Ingress []string `json:"ingress,omitempty"`
}

func netRecordPath(dir string) string { return filepath.Join(dir, "network.json") }

func writeNetRecord(dir string, r *netRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp := netRecordPath(dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("record network set-up: %w", err)
	}
	if err := os.Rename(tmp, netRecordPath(dir)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("record network set-up: %w", err)
	}
	return nil
}

// NetNSPath returns the path of the network namespace the spec names, ""
// when it names none or asks for a new, empty one.
func NetNSPath(spec *specs.Spec) string {
	if spec == nil || spec.Linux == nil {
		return ""
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return ns.Path
		}
	}
	return ""
}

// Check refuses, before anything touches disk, a spec whose network
// namespace the VM cannot join.
func Check(spec *specs.Spec, model string) error {
	path := NetNSPath(spec)
	if path == "" || model == NetworkNone {
		return nil
	}
	var st, self unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fmt.Errorf("network namespace %s (linux.namespaces in config.json): %w", path, err)
	}
	if err := unix.Stat("/proc/self/ns/net", &self); err == nil && st.Dev == self.Dev && st.Ino == self.Ino {
		return fmt.Errorf("network namespace %s is the host's own: skiff would take its interfaces over; give the container a namespace of its own, or set runtime.network_model = \"none\"", path)
	}
	return nil
}

// inNetNS runs fn on a thread that has entered the network namespace at
// path. The thread is thrown away if it cannot be brought back.
func inNetNS(path string, fn func() error) error {
	return onNetNSThread(func() error {
		target, err := netns.GetFromPath(path)
		if err != nil {
			return fmt.Errorf("open network namespace %s: %w", path, err)
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			return fmt.Errorf("enter network namespace %s: %w", path, err)
		}
		return nil
	}, fn)
}

// onNetNSThread runs enter and then fn on a locked thread of their own:
// enter moves the thread into a network namespace (fn runs only if it
// succeeds), and the thread goes back to its namespace afterwards. A
// thread that cannot go back is thrown away.
func onNetNSThread(enter, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := enter(); err != nil {
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread()
			}
			errc <- err
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		} // else: the goroutine ends locked, and Go retires the thread
		errc <- err
	}()
	return <-errc
}

// Network is what Setup hands the VM and the agent. A nil *Network means
// loopback only; its methods accept that.
type Network struct {
	devices []hypervisor.NetDevice
	req     protocol.ConfigureNetworkRequest
}

// Devices are the NICs for hypervisor.Config.
func (n *Network) Devices() []hypervisor.NetDevice {
	if n == nil {
		return nil
	}
	return n.devices
}

// CloseTaps closes this process's copies of the tap fds. The taps are not
// persistent: once the VMM (which inherited them) exits too, they vanish.
func (n *Network) CloseTaps() {
	if n == nil {
		return
	}
	for _, d := range n.devices {
		d.Tap.Close()
	}
}

// RestoredNICs tells the request that the guest's NICs have the MACs mac
// gives (a VM restored from a template), to be replaced by the namespace's.
func (n *Network) RestoredNICs(mac func(k int) string) {
	if n == nil {
		return
	}
	for k := range n.req.Interfaces {
		n.req.Interfaces[k].DeviceMAC = mac(k)
	}
}

// Request is what the agent must be told: the namespace's addresses,
// MTUs and routes for the guest's NICs; nil when there are none.
func (n *Network) Request() *protocol.ConfigureNetworkRequest {
	if n == nil || len(n.req.Interfaces) == 0 {
		return nil
	}
	return &n.req
}

// BringTap puts the k-th tap the VM already has, under the name given, in
// the current network namespace (a pooled VM's spare tap): Setup then
// wires it instead of creating one. Its NetDevice has no fd.
type BringTap func(k int, name string) error

// CountNICs is how many NICs Setup would give the VM.
func CountNICs(spec *specs.Spec, model string) (int, error) {
	path := NetNSPath(spec)
	if path == "" || model == NetworkNone {
		return 0, nil
	}
	n := 0
	err := inNetNS(path, func() error {
		links, err := plan(&netRecord{})
		n = len(links)
		return err
	})
	return n, err
}

// Setup connects the VM of the sandbox whose directory is dir to the
// spec's network namespace as the model says, the VM's taps brought by
// bring rather than created (bring nil: created). It returns nil (loopback
// only) when there is nothing to connect. On error, what it made is
// already undone.
func Setup(dir string, spec *specs.Spec, model string, bring BringTap) (_ *Network, err error) {
	path := NetNSPath(spec)
	if path == "" || model == NetworkNone {
		return nil, nil
	}
	// Check ran in create, in the caller's namespace: the shim may
	// already be in the one it is given (its main thread enters it).
	// Two sandboxes given one namespace at once must not both see it free.
	lock, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("network namespace %s: %w", path, err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return nil, fmt.Errorf("lock network namespace %s: %w", path, err)
	}
	rec := &netRecord{NetNS: path}
	n := &Network{}
	defer func() {
		if err != nil {
			n.CloseTaps()
			if rerr := Remove(dir); rerr != nil {
				err = fmt.Errorf("%w (and undoing it: %v)", err, rerr)
			}
		}
	}()
	err = inNetNS(path, func() error {
		links, err := plan(rec)
		if err != nil {
			return err
		}
		if err := writeNetRecord(dir, rec); err != nil {
			return err
		}
		for i, l := range links {
			var tap *os.File
			if bring != nil {
				err = bring(i, rec.Taps[i])
			} else {
				tap, err = openTap(rec.Taps[i])
			}
			if err != nil {
				return fmt.Errorf("network namespace %s: interface %s: %w", path, l.Attrs().Name, err)
			}
			dev, iface, err := connect(l, tap, rec.Taps[i], contains(rec.Ingress, l.Attrs().Name))
			if err != nil {
				return fmt.Errorf("network namespace %s: interface %s: %w", path, l.Attrs().Name, err)
			}
			n.devices = append(n.devices, dev)
			n.req.Interfaces = append(n.req.Interfaces, *iface)
		}
		n.req.Routes, n.req.Neighbors, err = readRoutes(links)
		if err != nil {
			return fmt.Errorf("network namespace %s: %w", path, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slog.Debug("connected to the network namespace", "netns", path, "taps", rec.Taps, "interfaces", rec.Links)
	return n, nil
}

// plan lists the namespace's interfaces that get a NIC and fills rec with
// what will be created. It changes nothing.
func plan(rec *netRecord) ([]netlink.Link, error) {
	all, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	used := map[string]bool{}
	for _, l := range all {
		used[l.Attrs().Name] = true
	}
	var links []netlink.Link
	next := 0
	for _, l := range all {
		a := l.Attrs()
		// Any link that carries Ethernet frames is joined: a veth (CNI,
		// netavark), or a tap another program serves (slirp4netns,
		// pasta). Loopback, skiff's own taps and links without an
		// Ethernet address (tun, ipip...) are not.
		if a.Flags&net.FlagLoopback != 0 || (l.Type() == "tuntap" && tapPattern.MatchString(a.Name)) || len(a.HardwareAddr) != 6 {
			continue
		}
		filters, _ := netlink.FilterList(l, ingressParent)
		for _, f := range filters {
			if f.Attrs().Priority == filterPriority {
				return nil, fmt.Errorf("interface %s is already connected to a skiff VM: a network namespace serves one sandbox", a.Name)
			}
		}
		hasIngress := false
		qdiscs, err := netlink.QdiscList(l)
		if err != nil {
			return nil, fmt.Errorf("list qdiscs of %s: %w", a.Name, err)
		}
		for _, q := range qdiscs {
			if q.Type() == "ingress" {
				hasIngress = true
			}
		}
		var tap string
		for tap = "tap" + strconv.Itoa(next) + "_skiff"; used[tap]; tap = "tap" + strconv.Itoa(next) + "_skiff" {
			next++
		}
		next++
		links = append(links, l)
		rec.Taps = append(rec.Taps, tap)
		rec.Links = append(rec.Links, a.Name)
		if !hasIngress {
			rec.Ingress = append(rec.Ingress, a.Name)
		}
	}
	return links, nil
}

// connect mirrors l and the tap tapName (whose fd f is closed on error; nil
// for a tap the VM holds already) with tc, and describes the guest's
// interface. A tap skiff created lives as long as its fds.
func connect(l netlink.Link, f *os.File, tapName string, addIngress bool) (hypervisor.NetDevice, *protocol.Interface, error) {
	a := l.Attrs()
	ok := false
	defer func() {
		if !ok && f != nil {
			f.Close()
		}
	}()
	tap, err := netlink.LinkByName(tapName)
	if err != nil {
		return hypervisor.NetDevice{}, nil, fmt.Errorf("find tap %s: %w", tapName, err)
	}
	if err := netlink.LinkSetMTU(tap, a.MTU); err != nil {
		return hypervisor.NetDevice{}, nil, fmt.Errorf("set MTU of %s: %w", tapName, err)
	}
	if err := netlink.LinkSetUp(tap); err != nil {
		return hypervisor.NetDevice{}, nil, fmt.Errorf("set %s up: %w", tapName, err)
	}
	if addIngress {
		if err := addIngressQdisc(l); err != nil {
			return hypervisor.NetDevice{}, nil, err
		}
	}
	if err := addIngressQdisc(tap); err != nil {
		return hypervisor.NetDevice{}, nil, err
	}
	if err := redirect(l, tap); err != nil {
		return hypervisor.NetDevice{}, nil, err
	}
	iface := &protocol.Interface{Name: a.Name, MAC: a.HardwareAddr.String(), MTU: a.MTU}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return hypervisor.NetDevice{}, nil, fmt.Errorf("list addresses: %w", err)
	}
	var own []*net.IPNet
	for _, ad := range addrs {
		// The guest derives the same IPv6 link-local address from the
		// same MAC by itself.
		if ad.IP.IsLinkLocalUnicast() && ad.IP.To4() == nil {
			continue
		}
		iface.Addresses = append(iface.Addresses, ad.IPNet.String())
		own = append(own, ad.IPNet)
	}
	if err := guard(tap, l, a.HardwareAddr, own); err != nil {
		return hypervisor.NetDevice{}, nil, err
	}
	ok = true
	return hypervisor.NetDevice{Tap: f, MAC: iface.MAC}, iface, nil
}

// openTap creates a non-persistent tap in the current network namespace:
// multi-queue off, no packet-information header, virtio-net headers on
// (QEMU passes offloads through them).
func openTap(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap name %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create tap %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}

func addIngressQdisc(l netlink.Link) error {
	q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: l.Attrs().Index,
		Handle:    ingressParent,
		Parent:    netlink.HANDLE_INGRESS,
	}}
	if err := netlink.QdiscAdd(q); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add ingress qdisc to %s: %w", l.Attrs().Name, err)
	}
	return nil
}

// redirect sends every frame arriving on from out of to.
func redirect(from, to netlink.Link) error {
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: from.Attrs().Index,
			Parent:    ingressParent,
			Priority:  filterPriority,
			Protocol:  unix.ETH_P_ALL,
		},
		// One key matching any value: every frame.
		Sel: &netlink.TcU32Sel{
			Flags: nl.TC_U32_TERMINAL,
			Nkeys: 1,
			Keys:  []netlink.TcU32Key{{Mask: 0, Val: 0, Off: 0}},
		},
		Actions: []netlink.Action{netlink.NewMirredAction(to.Attrs().Index)},
	}
	if err := netlink.FilterAdd(f); err != nil {
		return fmt.Errorf("redirect %s to %s with tc: %w", from.Attrs().Name, to.Attrs().Name, err)
	}
	return nil
}

// readRoutes returns the main table's routes through links and their
// permanent neighbours, naming devices as the guest will.
func readRoutes(links []netlink.Link) ([]protocol.Route, []protocol.Neighbor, error) {
	var routes []protocol.Route
	var neighs []protocol.Neighbor
	for _, l := range links {
		name := l.Attrs().Name
		rs, err := netlink.RouteListFiltered(netlink.FAMILY_ALL,
			&netlink.Route{LinkIndex: l.Attrs().Index, Table: unix.RT_TABLE_MAIN},
			netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, nil, fmt.Errorf("list routes of %s: %w", name, err)
		}
		for _, r := range rs {
			// Routes the kernel made for an address, the guest's kernel
			// makes too; multipath and non-unicast routes are not copied.
			if r.Protocol == unix.RTPROT_KERNEL || r.Type != unix.RTN_UNICAST || len(r.MultiPath) > 0 {
				continue
			}
			if r.Dst != nil && r.Dst.IP.IsLinkLocalUnicast() && r.Dst.IP.To4() == nil {
				continue
			}
			pr := protocol.Route{Device: name, Family: 4, Scope: int(r.Scope), Metric: r.Priority}
			if r.Family == unix.AF_INET6 {
				pr.Family = 6
			}
			if r.Dst != nil {
				if ones, _ := r.Dst.Mask.Size(); ones > 0 || !r.Dst.IP.IsUnspecified() {
					pr.Dest = r.Dst.String()
				}
			}
			if r.Gw != nil {
				pr.Gateway = r.Gw.String()
			}
			if r.Src != nil {
				pr.Source = r.Src.String()
			}
			routes = append(routes, pr)
		}
		ns, err := netlink.NeighList(l.Attrs().Index, netlink.FAMILY_ALL)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, nil, fmt.Errorf("list neighbours of %s: %w", name, err)
		}
		for _, n := range ns {
			if n.State&netlink.NUD_PERMANENT == 0 || n.IP == nil || len(n.HardwareAddr) != 6 {
				continue
			}
			neighs = append(neighs, protocol.Neighbor{IP: n.IP.String(), MAC: n.HardwareAddr.String(), Device: name})
		}
	}
	return routes, neighs, nil
}

// Remove undoes Setup from the record in dir: it deletes
// skiff's taps and filters, and the ingress qdiscs skiff added, in the
// namespace recorded. A missing record or namespace means nothing is left
// to undo. It is for the shim after the VM stopped, and for delete.
func Remove(dir string) error {
	b, err := os.ReadFile(netRecordPath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read network record: %w", err)
	}
	var rec netRecord
	if err := json.Unmarshal(b, &rec); err != nil || rec.NetNS == "" {
		// Unreadable: a crash mid-write of the temp file never renames it,
		// so this is not ours to interpret.
		return os.Remove(netRecordPath(dir))
	}
	if _, err := os.Stat(rec.NetNS); errors.Is(err, os.ErrNotExist) {
		// Its owner deleted the namespace, and everything in it.
		return os.Remove(netRecordPath(dir))
	}
	err = inNetNS(rec.NetNS, func() error {
		var errs []error
		for _, name := range rec.Taps {
			if !tapPattern.MatchString(name) {
				continue
			}
			l, err := netlink.LinkByName(name)
			if err != nil || l.Type() != "tuntap" {
				continue // gone with the VMM's fd, or not ours
			}
			if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
				errs = append(errs, fmt.Errorf("delete tap %s: %w", name, err))
			}
		}
		for _, name := range rec.Links {
			l, err := netlink.LinkByName(name)
			if err != nil {
				continue // deleted by its owner
			}
			filters, _ := netlink.FilterList(l, ingressParent)
			for _, f := range filters {
				if f.Attrs().Priority != filterPriority {
					continue
				}
				if err := netlink.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Errorf("delete tc filter on %s: %w", name, err))
				}
			}
			if contains(rec.Ingress, name) {
				q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: l.Attrs().Index, Handle: ingressParent, Parent: netlink.HANDLE_INGRESS}}
				if err := netlink.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
					errs = append(errs, fmt.Errorf("delete ingress qdisc of %s: %w", name, err))
				}
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", rec.NetNS, err)
	}
	return os.Remove(netRecordPath(dir))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
