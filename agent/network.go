package agent

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// nicWait bounds the wait for a NIC the host announced: virtio-net probes
// its devices while its module loads, so they normally exist already.
const nicWait = 5 * time.Second

// configureNetwork makes the guest's NICs look like the interfaces of the
// namespace the host mirrors them from: names, MTUs, addresses, routes,
// neighbours. Containers share the guest's network namespace, so this is
// the network they see.
func (a *Agent) configureNetwork(req *protocol.ConfigureNetworkRequest) error {
	if err := validateNetwork(req); err != nil {
		return err
	}
	links, err := findNICs(req.Interfaces)
	if err != nil {
		return err
	}
	if err := renameNICs(req.Interfaces, links); err != nil {
		return err
	}
	for i, ifc := range req.Interfaces {
		if err := configureNIC(ifc, links[i]); err != nil {
			return fmt.Errorf("interface %s: %w", ifc.Name, err)
		}
	}
	// Routes to a gateway need the gateway's link route first.
	for _, pass := range []bool{false, true} {
		for _, r := range req.Routes {
			if (r.Gateway != "") != pass {
				continue
			}
			if err := addRoute(r); err != nil {
				return err
			}
		}
	}
	for _, n := range req.Neighbors {
		if err := addNeighbor(n); err != nil {
			return err
		}
	}
	if len(req.Interfaces) > 0 {
		a.mu.Lock()
		a.networked = true
		a.mu.Unlock()
	}
	a.log.debugf("network: %d interfaces, %d routes, %d neighbours", len(req.Interfaces), len(req.Routes), len(req.Neighbors))
	return nil
}

// validateNetwork checks the whole request before anything changes.
func validateNetwork(req *protocol.ConfigureNetworkRequest) error {
	names := map[string]bool{}
	for _, ifc := range req.Interfaces {
		if !validIfName(ifc.Name) || ifc.Name == "lo" {
			return fmt.Errorf("interface name %q is invalid", ifc.Name)
		}
		if names[ifc.Name] {
			return fmt.Errorf("interface %s is named twice", ifc.Name)
		}
		names[ifc.Name] = true
		if hw, err := net.ParseMAC(ifc.MAC); err != nil || len(hw) != 6 {
			return fmt.Errorf("interface %s: invalid MAC %q", ifc.Name, ifc.MAC)
		}
		if hw, err := net.ParseMAC(ifc.DeviceMAC); ifc.DeviceMAC != "" && (err != nil || len(hw) != 6) {
			return fmt.Errorf("interface %s: invalid device MAC %q", ifc.Name, ifc.DeviceMAC)
		}
		if ifc.MTU < 0 || ifc.MTU > 65535 {
			return fmt.Errorf("interface %s: invalid MTU %d", ifc.Name, ifc.MTU)
		}
		for _, ad := range ifc.Addresses {
			if _, err := netlink.ParseIPNet(ad); err != nil {
				return fmt.Errorf("interface %s: invalid address %q", ifc.Name, ad)
			}
		}
	}
	for _, r := range req.Routes {
		if !names[r.Device] {
			return fmt.Errorf("route %+v: unknown device", r)
		}
		if r.Family != 4 && r.Family != 6 {
			return fmt.Errorf("route %+v: family must be 4 or 6", r)
		}
		if _, err := parseRoute(r, 0); err != nil {
			return err
		}
	}
	for _, n := range req.Neighbors {
		if !names[n.Device] {
			return fmt.Errorf("neighbour %+v: unknown device", n)
		}
		if net.ParseIP(n.IP) == nil {
			return fmt.Errorf("neighbour %+v: invalid IP", n)
		}
		if _, err := net.ParseMAC(n.MAC); err != nil {
			return fmt.Errorf("neighbour %+v: invalid MAC", n)
		}
	}
	return nil
}

func validIfName(s string) bool {
	return s != "" && len(s) < unix.IFNAMSIZ && s != "." && s != ".." &&
		!strings.ContainsAny(s, "/: \t\n\x00")
}

// findNICs returns the guest link of each interface, by MAC.
func findNICs(ifcs []protocol.Interface) ([]netlink.Link, error) {
	deadline := time.Now().Add(nicWait)
	for {
		all, err := netlink.LinkList()
		if err != nil {
			return nil, fmt.Errorf("list links: %w", err)
		}
		found := make([]netlink.Link, len(ifcs))
		missing := ""
		for i, ifc := range ifcs {
			mac := ifc.MAC
			if ifc.DeviceMAC != "" {
				mac = ifc.DeviceMAC
			}
			hw, _ := net.ParseMAC(mac)
			for _, l := range all {
				if l.Attrs().HardwareAddr.String() == hw.String() {
					found[i] = l
				}
			}
			if found[i] == nil && missing == "" {
				missing = mac
			}
		}
		if missing == "" {
			return found, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no guest NIC has MAC %s (is virtio_net in the guest image?)", missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// renameNICs gives each NIC its interface's name. The kernel's eth0,
// eth1 may be the wanted names in another order: a NIC whose name another
// link still holds first moves to a temporary name. A NIC is renamed
// directly where it can be: each rename costs ~10 ms under TCG.
func renameNICs(ifcs []protocol.Interface, links []netlink.Link) error {
	var parked []int // links at a temporary name
	for i, l := range links {
		if l.Attrs().Name == ifcs[i].Name {
			continue
		}
		if err := setDown(l); err != nil {
			return err
		}
		name := ifcs[i].Name
		if _, err := netlink.LinkByName(name); err == nil {
			name = "skiffnic" + strconv.Itoa(i)
			parked = append(parked, i)
		}
		if err := netlink.LinkSetName(l, name); err != nil {
			return fmt.Errorf("rename %s to %s: %w", l.Attrs().Name, name, err)
		}
		l.Attrs().Name = name
	}
	for _, i := range parked {
		l := links[i]
		if err := netlink.LinkSetName(l, ifcs[i].Name); err != nil {
			return fmt.Errorf("rename %s to %s: %w", l.Attrs().Name, ifcs[i].Name, err)
		}
		l.Attrs().Name = ifcs[i].Name
	}
	return nil
}

// setDown sets l down unless it is: a NIC of a fresh guest, a template's
// included, has never been up.
func setDown(l netlink.Link) error {
	if l.Attrs().Flags&net.FlagUp == 0 {
		return nil
	}
	if err := netlink.LinkSetDown(l); err != nil {
		return fmt.Errorf("set %s down: %w", l.Attrs().Name, err)
	}
	l.Attrs().Flags &^= net.FlagUp
	return nil
}

func configureNIC(ifc protocol.Interface, l netlink.Link) error {
	if hw, _ := net.ParseMAC(ifc.MAC); l.Attrs().HardwareAddr.String() != hw.String() {
		// A NIC restored from a template: it takes the namespace
		// interface's MAC (while down, as virtio-net requires).
		if err := setDown(l); err != nil {
			return err
		}
		if err := netlink.LinkSetHardwareAddr(l, hw); err != nil {
			return fmt.Errorf("set MAC %s: %w", hw, err)
		}
	}
	if ifc.MTU > 0 && l.Attrs().MTU != ifc.MTU {
		if err := netlink.LinkSetMTU(l, ifc.MTU); err != nil {
			return fmt.Errorf("set MTU %d: %w", ifc.MTU, err)
		}
	}
	for _, s := range ifc.Addresses {
		ipn, _ := netlink.ParseIPNet(s)
		ad := &netlink.Addr{IPNet: ipn}
		if ipn.IP.To4() == nil {
			// The address is the namespace's, already proven unique
			// there: duplicate detection would only delay it.
			ad.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrAdd(l, ad); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add address %s: %w", s, err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	return nil
}

// parseRoute turns a protocol route into a netlink one on link index idx.
func parseRoute(r protocol.Route, idx int) (*netlink.Route, error) {
	nr := &netlink.Route{LinkIndex: idx, Scope: netlink.Scope(r.Scope), Priority: r.Metric, Table: unix.RT_TABLE_MAIN}
	nr.Family = unix.AF_INET
	if r.Family == 6 {
		nr.Family = unix.AF_INET6
	}
	if r.Dest != "" {
		_, dst, err := net.ParseCIDR(r.Dest)
		if err != nil {
			return nil, fmt.Errorf("route to %q: invalid destination", r.Dest)
		}
		nr.Dst = dst
	} else if r.Family == 6 {
		nr.Dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	} else {
		nr.Dst = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	}
	if r.Gateway != "" {
		if nr.Gw = net.ParseIP(r.Gateway); nr.Gw == nil {
			return nil, fmt.Errorf("route to %q: invalid gateway %q", r.Dest, r.Gateway)
		}
	}
	if r.Source != "" {
		if nr.Src = net.ParseIP(r.Source); nr.Src == nil {
			return nil, fmt.Errorf("route to %q: invalid source %q", r.Dest, r.Source)
		}
	}
	if r.Scope < 0 || r.Scope > 255 || r.Metric < 0 {
		return nil, fmt.Errorf("route to %q: invalid scope or metric", r.Dest)
	}
	return nr, nil
}

func addRoute(r protocol.Route) error {
	l, err := netlink.LinkByName(r.Device)
	if err != nil {
		return fmt.Errorf("route via %s: %w", r.Device, err)
	}
	nr, err := parseRoute(r, l.Attrs().Index)
	if err != nil {
		return err
	}
	if err := netlink.RouteAdd(nr); err != nil && !errors.Is(err, unix.EEXIST) {
		dest := r.Dest
		if dest == "" {
			dest = "default"
		}
		return fmt.Errorf("add route %s via %q dev %s: %w", dest, r.Gateway, r.Device, err)
	}
	return nil
}

func addNeighbor(n protocol.Neighbor) error {
	l, err := netlink.LinkByName(n.Device)
	if err != nil {
		return fmt.Errorf("neighbour on %s: %w", n.Device, err)
	}
	ip := net.ParseIP(n.IP)
	hw, _ := net.ParseMAC(n.MAC)
	family := netlink.FAMILY_V4
	if ip.To4() == nil {
		family = netlink.FAMILY_V6
	}
	err = netlink.NeighSet(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: family, State: netlink.NUD_PERMANENT, IP: ip, HardwareAddr: hw})
	if err != nil {
		return fmt.Errorf("add neighbour %s on %s: %w", n.IP, n.Device, err)
	}
	return nil
}
