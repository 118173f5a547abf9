package hostnet

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// A real namespace, no VM: set-up creates the tap and filters and reads the
// addresses and routes; a second sandbox on the same namespace is refused;
// teardown leaves the namespace as it was, including an ingress qdisc its
// owner had put there.
func TestNetworkRoundTrip(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2")
	}
	name := fmt.Sprintf("skiff-unit-%d", os.Getpid())
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("ip", "netns", "add", name)
	defer exec.Command("ip", "netns", "del", name).Run()
	run("ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
	run("ip", "-n", name, "addr", "add", "192.168.77.2/24", "dev", "eth0")
	run("ip", "-n", name, "link", "set", "eth0", "mtu", "1400", "up")
	run("ip", "-n", name, "link", "set", "eth1", "up")
	run("ip", "-n", name, "route", "add", "default", "via", "192.168.77.1")
	run("ip", "-n", name, "neigh", "add", "192.168.77.1", "lladdr", "02:00:00:00:00:01", "dev", "eth0", "nud", "permanent")
	// eth1's owner uses tc itself: its qdisc must survive teardown.
	run("tc", "-n", name, "qdisc", "add", "dev", "eth1", "ingress")
	path := "/var/run/netns/" + name

	d := t.TempDir()
	n, err := Setup(d, specWithNetNS(path), NetworkTCFilter, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(n.devices) != 2 || len(n.req.Interfaces) != 2 {
		t.Fatalf("devices %v, interfaces %+v: want eth0 and eth1", n.devices, n.req.Interfaces)
	}
	sawEth0 := false
	for _, ifc := range n.req.Interfaces {
		if ifc.Name == "eth0" {
			sawEth0 = true
			if ifc.MTU != 1400 || len(ifc.Addresses) != 1 || ifc.Addresses[0] != "192.168.77.2/24" {
				t.Errorf("eth0 read as %+v", ifc)
			}
		}
	}
	if !sawEth0 {
		t.Errorf("no eth0 in %+v", n.req.Interfaces)
	}
	if len(n.req.Routes) != 1 || n.req.Routes[0].Gateway != "192.168.77.1" || n.req.Routes[0].Dest != "" || n.req.Routes[0].Device != "eth0" {
		t.Errorf("routes %+v, want only the default via 192.168.77.1 on eth0", n.req.Routes)
	}
	if len(n.req.Neighbors) != 1 || n.req.Neighbors[0].MAC != "02:00:00:00:00:01" {
		t.Errorf("neighbours %+v, want the permanent one", n.req.Neighbors)
	}
	links := run("ip", "-n", name, "-o", "link", "show")
	if !strings.Contains(links, "tap0_skiff") || !strings.Contains(links, "tap1_skiff") {
		t.Errorf("no taps in the namespace:\n%s", links)
	}
	if f := run("tc", "-n", name, "filter", "show", "dev", "eth0", "ingress"); !strings.Contains(f, "tap") {
		t.Errorf("no redirect on eth0:\n%s", f)
	}

	if _, err := Setup(t.TempDir(), specWithNetNS(path), NetworkTCFilter, nil); err == nil || !strings.Contains(err.Error(), "already connected") {
		t.Errorf("second sandbox on the namespace: error %v, want a refusal", err)
	}

	n.CloseTaps() // as the VMM exiting does
	if err := Remove(d); err != nil {
		t.Fatal(err)
	}
	if links := run("ip", "-n", name, "-o", "link", "show"); strings.Contains(links, "skiff") {
		t.Errorf("taps left:\n%s", links)
	}
	for _, dev := range []string{"eth0", "eth1"} {
		if f := strings.TrimSpace(run("tc", "-n", name, "filter", "show", "dev", dev, "ingress")); f != "" {
			t.Errorf("filters left on %s:\n%s", dev, f)
		}
	}
	if q := run("tc", "-n", name, "qdisc", "show", "dev", "eth0"); strings.Contains(q, "ingress") {
		t.Errorf("skiff's ingress qdisc left on eth0:\n%s", q)
	}
	if q := run("tc", "-n", name, "qdisc", "show", "dev", "eth1"); !strings.Contains(q, "ingress") {
		t.Errorf("the owner's ingress qdisc on eth1 was removed:\n%s", q)
	}
	if _, err := os.Stat(netRecordPath(d)); !os.IsNotExist(err) {
		t.Errorf("network record left after teardown")
	}
}
