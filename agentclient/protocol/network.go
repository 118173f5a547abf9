package protocol

// MethodConfigureNetwork gives the guest the interfaces, addresses, routes
// and neighbours of the network namespace the container was handed. The
// host calls it once, after Ping and before CreateContainer, and only when
// the VM has network devices.
const MethodConfigureNetwork = "ConfigureNetwork"

// ConfigureNetworkRequest describes the guest's network as it must look:
// the same as the namespace's interfaces, whose traffic the host mirrors to
// the VM's virtio-net devices.
type ConfigureNetworkRequest struct {
	Interfaces []Interface `json:"interfaces"`
	// Routes are added after every interface is up, link routes (no
	// gateway) before the routes that go through a gateway.
	Routes    []Route    `json:"routes,omitempty"`
	Neighbors []Neighbor `json:"neighbors,omitempty"`
}

// Interface is one guest NIC, found by its MAC address (the host gives
// the virtio-net device the MAC of the namespace's interface).
type Interface struct {
	// Name is the interface's name in the namespace (eth0, say); the guest
	// renames its NIC to it.
	Name string `json:"name"`
	MAC  string `json:"mac"`
	// DeviceMAC, when set, is the MAC the guest NIC has now: a VM restored
	// from a template has the template's. The agent finds the NIC by it
	// and gives it MAC.
	DeviceMAC string `json:"deviceMac,omitempty"`
	MTU       int    `json:"mtu,omitempty"`
	// Addresses in CIDR notation, IPv4 and IPv6.
	Addresses []string `json:"addresses,omitempty"`
}

// Route is one route of the main table. Device is the Name of an
// Interface of the same request.
type Route struct {
	// Dest in CIDR notation; empty for a default route.
	Dest    string `json:"dest,omitempty"`
	Gateway string `json:"gateway,omitempty"`
	Source  string `json:"source,omitempty"`
	Device  string `json:"device"`
	// Family is 4 or 6; it says which default route an empty Dest means.
	Family int `json:"family"`
	// Scope is the kernel's route scope (0 universe, 253 link).
	Scope  int `json:"scope,omitempty"`
	Metric int `json:"metric,omitempty"`
}

// Neighbor is a permanent neighbour entry (static ARP or NDP).
type Neighbor struct {
	IP     string `json:"ip"`
	MAC    string `json:"mac"`
	Device string `json:"device"`
}
