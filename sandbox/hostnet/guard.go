package hostnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// What the guest sends leaves its tap only if it is the sandbox's own: its
// MAC as the source, and one of its addresses as the IP source (or, for
// ARP, the sender address; IPv6 link-local and unspecified sources too,
// which neighbour discovery uses), so that a guest whose kernel was taken
// over can neither spoof a neighbour nor poison ARP caches on the node's
// network. The filters are u32 on the tap's ingress (what the guest
// sends); the tap goes with the sandbox, and its filters with it.
//
// What no filter redirects stays on the tap, which is made deaf (deafen):
// gact, the action that would drop it, is not in every kernel (this
// project's hosts have mirred alone), while these sysctls are.

// guardPriority is the first priority of the allow filters.
const guardPriority = 0x5f00

// guard redirects from tap to link only the frames the sandbox may send
// (MAC mac, addresses addrs); the tap keeps the rest, and ignores it.
func guard(tap, link netlink.Link, mac net.HardwareAddr, addrs []*net.IPNet) error {
	if err := deafen(tap.Attrs().Name); err != nil {
		return err
	}
	prio := uint16(guardPriority)
	allow := func(proto uint16, keys []netlink.TcU32Key) error {
		f := u32Filter(tap, prio, proto, append(macKeys(mac), keys...), netlink.NewMirredAction(link.Attrs().Index))
		prio++
		if err := netlink.FilterAdd(f); err != nil {
			return fmt.Errorf("let the sandbox's own frames out of %s: %w", tap.Attrs().Name, err)
		}
		return nil
	}
	// ARP: the sender address is the sandbox's, or 0.0.0.0 (a probe).
	senders := []net.IP{net.IPv4zero.To4()}
	for _, a := range addrs {
		if ip4 := a.IP.To4(); ip4 != nil {
			senders = append(senders, ip4)
			if err := allow(unix.ETH_P_IP, []netlink.TcU32Key{{Mask: 0xffffffff, Val: be32(ip4), Off: 12}}); err != nil {
				return err
			}
		} else if err := allow(unix.ETH_P_IPV6, ipv6Source(a.IP, 128)); err != nil {
			return err
		}
	}
	for _, ip := range senders {
		// The sender protocol address is at 14 in the ARP header: two
		// halves of two aligned words.
		v := be32(ip)
		if err := allow(unix.ETH_P_ARP, []netlink.TcU32Key{
			{Mask: 0x0000ffff, Val: v >> 16, Off: 12},
			{Mask: 0xffff0000, Val: v << 16, Off: 16},
		}); err != nil {
			return err
		}
	}
	for _, src := range []struct {
		ip   net.IP
		bits int
	}{{net.ParseIP("fe80::"), 10}, {net.IPv6unspecified, 128}} {
		if err := allow(unix.ETH_P_IPV6, ipv6Source(src.ip, src.bits)); err != nil {
			return err
		}
	}
	return nil
}

// deafen makes the namespace's own stack ignore what arrives on tap: no
// ARP answers, no IPv6, and strict reverse-path filtering, which drops
// every IPv4 packet since no route goes through the tap. Run in the
// sandbox's network namespace (the sysctls under /proc/sys/net are the
// opening thread's namespace's).
func deafen(tap string) error {
	for _, s := range []struct{ path, value string }{
		{"/proc/sys/net/ipv4/conf/" + tap + "/arp_ignore", "8"},
		{"/proc/sys/net/ipv4/conf/" + tap + "/rp_filter", "1"},
		{"/proc/sys/net/ipv6/conf/" + tap + "/disable_ipv6", "1"},
	} {
		if err := os.WriteFile(s.path, []byte(s.value), 0); err != nil && !(errors.Is(err, os.ErrNotExist) && strings.Contains(s.path, "ipv6")) {
			return fmt.Errorf("make %s deaf: %w", tap, err)
		}
	}
	return nil
}

// u32Filter is a terminal u32 filter on l's ingress.
func u32Filter(l netlink.Link, prio, proto uint16, keys []netlink.TcU32Key, action netlink.Action) *netlink.U32 {
	return &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: l.Attrs().Index,
			Parent:    ingressParent,
			Priority:  prio,
			Protocol:  proto,
		},
		Sel:     &netlink.TcU32Sel{Flags: nl.TC_U32_TERMINAL, Nkeys: uint8(len(keys)), Keys: keys},
		Actions: []netlink.Action{action},
	}
}

// macKeys match the Ethernet source address, 8 bytes before the network
// header (tc's "ether src"): a word, then half of the next.
func macKeys(mac net.HardwareAddr) []netlink.TcU32Key {
	return []netlink.TcU32Key{
		{Mask: 0xffffffff, Val: binary.BigEndian.Uint32(mac[0:4]), Off: -8},
		{Mask: 0xffff0000, Val: uint32(mac[4])<<24 | uint32(mac[5])<<16, Off: -4},
	}
}

// ipv6Source matches the first bits of an IPv6 source address (at 8).
func ipv6Source(ip net.IP, bits int) []netlink.TcU32Key {
	ip = ip.To16()
	var keys []netlink.TcU32Key
	for w := 0; w < 4 && bits > 0; w++ {
		n := min(bits, 32)
		mask := uint32(0xffffffff) << (32 - n)
		keys = append(keys, netlink.TcU32Key{Mask: mask, Val: binary.BigEndian.Uint32(ip[4*w:]) & mask, Off: int32(8 + 4*w)})
		bits -= n
	}
	return keys
}

func be32(ip net.IP) uint32 { return binary.BigEndian.Uint32(ip.To4()) }
