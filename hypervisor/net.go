package hypervisor

import (
	"fmt"
	"net"
	"os"
	"strconv"
)

// NetDevice is one virtio-net NIC backed by a tap device the caller has
// already opened (in whatever network namespace it lives). The VMM gets
// the fd by inheritance, so it needs no privilege over that namespace.
type NetDevice struct {
	// Tap is the open tap device (/dev/net/tun after TUNSETIFF, IFF_TAP,
	// IFF_NO_PI, IFF_VNET_HDR). The caller keeps ownership: it may close
	// its copy once Start returned.
	Tap *os.File
	// MAC is the guest NIC's address, in the form net.ParseMAC accepts.
	MAC string
	// Placeholder is a NIC without a backend (Tap is nil): a VM template's
	// spare slot, which a clone may fill with a real tap.
	Placeholder bool
}

// validateNet checks the network devices of cfg and normalises their MACs.
func validateNet(cfg *Config) error {
	for i := range cfg.NetDevices {
		d := &cfg.NetDevices[i]
		if d.Tap == nil && !d.Placeholder {
			return fmt.Errorf("net device %d has no tap file", i)
		}
		hw, err := net.ParseMAC(d.MAC)
		if err != nil || len(hw) != 6 {
			return fmt.Errorf("net device %d: MAC %q is not a 6-byte Ethernet address", i, d.MAC)
		}
		if hw[0]&1 != 0 {
			return fmt.Errorf("net device %d: MAC %s is a multicast address", i, d.MAC)
		}
		d.MAC = hw.String()
	}
	return nil
}

// netArgs are the -netdev/-device pairs for the NICs. The taps are fds 3,
// 4, ... in the VMM, in device order, placeholders skipped: netFiles lists
// them in that order for ExtraFiles.
func netArgs(devs []NetDevice, bus string) []string {
	var a []string
	fd := 3
	for k, d := range devs {
		id := "net" + strconv.Itoa(k)
		dev := "virtio-net-" + bus + ",netdev=" + id + ",mac=" + d.MAC
		if bus == "pci" {
			// Direct kernel boot never runs the NIC's boot ROM; not loading
			// it spares a file QEMU packages may not ship.
			dev += ",romfile="
		}
		netdev := "tap,id=" + id + ",fd=" + strconv.Itoa(fd)
		if d.Placeholder {
			// Frames go nowhere: a hub with this one port.
			netdev = "hubport,id=" + id + ",hubid=" + strconv.Itoa(k)
		} else {
			fd++
		}
		a = append(a, "-netdev", netdev, "-device", dev)
	}
	return a
}

// netFiles are the files the VMM inherits as fds 3, 4, ...
func netFiles(devs []NetDevice) []*os.File {
	var f []*os.File
	for _, d := range devs {
		if !d.Placeholder {
			f = append(f, d.Tap)
		}
	}
	return f
}

// consoleFD is the fd the VMM has the guard's console socket on: the one
// after the taps.
func consoleFD(devs []NetDevice) int { return 3 + len(netFiles(devs)) }

// agentFD and qmpFD are the fds the VMM has the listening sockets of the
// agent channel and of QMP on, after the console's.
func agentFD(devs []NetDevice) int { return consoleFD(devs) + 1 }
func qmpFD(devs []NetDevice) int   { return consoleFD(devs) + 2 }

// shareFD is the fd of share i's file server socket (fsjail.go), after
// QMP's.
func shareFD(devs []NetDevice, i int) int { return qmpFD(devs) + 1 + i }
