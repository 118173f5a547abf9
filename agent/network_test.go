package agent

import (
	"testing"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

func TestValidateNetwork(t *testing.T) {
	good := func() protocol.ConfigureNetworkRequest {
		return protocol.ConfigureNetworkRequest{
			Interfaces: []protocol.Interface{{Name: "eth0", MAC: "02:00:00:00:00:01", MTU: 1500,
				Addresses: []string{"10.0.0.2/24", "fd00::2/64"}}},
			Routes: []protocol.Route{
				{Device: "eth0", Family: 4, Gateway: "10.0.0.1"},
				{Device: "eth0", Family: 6, Dest: "fd01::/64", Gateway: "fd00::1"},
			},
			Neighbors: []protocol.Neighbor{{IP: "10.0.0.1", MAC: "02:00:00:00:00:02", Device: "eth0"}},
		}
	}
	r := good()
	if err := validateNetwork(&r); err != nil {
		t.Fatalf("valid request refused: %v", err)
	}
	bad := map[string]func(*protocol.ConfigureNetworkRequest){
		"loopback name":   func(r *protocol.ConfigureNetworkRequest) { r.Interfaces[0].Name = "lo" },
		"long name":       func(r *protocol.ConfigureNetworkRequest) { r.Interfaces[0].Name = "a234567890123456" },
		"slash in name":   func(r *protocol.ConfigureNetworkRequest) { r.Interfaces[0].Name = "a/b" },
		"duplicate name":  func(r *protocol.ConfigureNetworkRequest) { r.Interfaces = append(r.Interfaces, r.Interfaces[0]) },
		"bad MAC":         func(r *protocol.ConfigureNetworkRequest) { r.Interfaces[0].MAC = "zz" },
		"bad MTU":         func(r *protocol.ConfigureNetworkRequest) { r.Interfaces[0].MTU = 1 << 20 },
		"bad address":     func(r *protocol.ConfigureNetworkRequest) { r.Interfaces[0].Addresses = []string{"10.0.0.300/24"} },
		"unknown device":  func(r *protocol.ConfigureNetworkRequest) { r.Routes[0].Device = "eth9" },
		"bad family":      func(r *protocol.ConfigureNetworkRequest) { r.Routes[0].Family = 5 },
		"bad gateway":     func(r *protocol.ConfigureNetworkRequest) { r.Routes[0].Gateway = "x" },
		"bad destination": func(r *protocol.ConfigureNetworkRequest) { r.Routes[1].Dest = "fd01::" },
		"bad scope":       func(r *protocol.ConfigureNetworkRequest) { r.Routes[0].Scope = 300 },
		"neighbour IP":    func(r *protocol.ConfigureNetworkRequest) { r.Neighbors[0].IP = "" },
		"neighbour dev":   func(r *protocol.ConfigureNetworkRequest) { r.Neighbors[0].Device = "eth1" },
	}
	for name, mutate := range bad {
		r := good()
		mutate(&r)
		if err := validateNetwork(&r); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
