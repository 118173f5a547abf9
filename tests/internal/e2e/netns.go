package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Netns is a network namespace made the way CNI plugins or a script with
// `ip netns` make one: a veth pair with eth0 inside (10.200.N.2/24, default
// route via the host side, fd00:200:N::2/64) and the host side
// (10.200.N.1/24, fd00:200:N::1/64) outside.
type Netns struct {
	Name string // under /var/run/netns
	Path string
	Host string // the host-side veth
	N    int
}

func (ns *Netns) HostIP() string       { return fmt.Sprintf("10.200.%d.1", ns.N) }
func (ns *Netns) ContainerIP() string  { return fmt.Sprintf("10.200.%d.2", ns.N) }
func (ns *Netns) HostIP6() string      { return fmt.Sprintf("fd00:200:%d::1", ns.N) }
func (ns *Netns) ContainerIP6() string { return fmt.Sprintf("fd00:200:%d::2", ns.N) }

// IP runs iproute2's ip.
func IP(args ...string) (string, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// NewNetns claims a free N (the namespace name is the claim: `ip netns
// add` refuses an existing one, so parallel tests and suites never share
// a subnet) and builds the namespace. It is deleted when the test ends.
func NewNetns(t *testing.T) *Netns {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("iproute2's ip is not installed (scripts/install-deps.sh installs it): %v", err)
	}
	for n := 10; n < 250; n++ {
		ns := &Netns{Name: fmt.Sprintf("skiff-e2e-%d", n), Host: fmt.Sprintf("skiffe2e%d", n), N: n}
		ns.Path = "/var/run/netns/" + ns.Name
		if _, err := IP("netns", "add", ns.Name); err != nil {
			continue
		}
		t.Cleanup(func() { IP("netns", "del", ns.Name) })
		// A host-side veth left by a crashed run of this N goes first.
		IP("link", "del", ns.Host)
		MustIP(t,
			[]string{"link", "add", ns.Host, "type", "veth", "peer", "name", "eth0", "netns", ns.Name},
			[]string{"addr", "add", ns.HostIP() + "/24", "dev", ns.Host},
			[]string{"addr", "add", ns.HostIP6() + "/64", "dev", ns.Host, "nodad"},
			[]string{"link", "set", ns.Host, "up"},
			[]string{"-n", ns.Name, "addr", "add", ns.ContainerIP() + "/24", "dev", "eth0"},
			[]string{"-n", ns.Name, "addr", "add", ns.ContainerIP6() + "/64", "dev", "eth0", "nodad"},
			[]string{"-n", ns.Name, "link", "set", "eth0", "up"},
			[]string{"-n", ns.Name, "link", "set", "lo", "up"},
			[]string{"-n", ns.Name, "route", "add", "default", "via", ns.HostIP()})
		return ns
	}
	t.Fatal("no free 10.200.N.0/24 namespace between 10 and 249")
	return nil
}

// MustIP runs each ip command in turn, failing t at the first error.
func MustIP(t *testing.T, cmds ...[]string) {
	t.Helper()
	for _, args := range cmds {
		if _, err := IP(args...); err != nil {
			t.Fatal(err)
		}
	}
}

// Links lists the namespace's interface names.
func (ns *Netns) Links(t *testing.T) []string {
	t.Helper()
	out, err := IP("-n", ns.Name, "-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		// "2: eth0@if5: <...> ..."
		// Only link lines: ip may also print notes ("Peer netns reference
		// is invalid.") while another test's namespace goes away.
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasSuffix(f[0], ":") && strings.Trim(f[0], "0123456789:") == "" {
			names = append(names, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
		}
	}
	return names
}

// AssertNoFilters fails t if a tc filter is left on the ingress of any of
// the namespace's devs.
func (ns *Netns) AssertNoFilters(t *testing.T, devs ...string) {
	t.Helper()
	for _, dev := range devs {
		out, _ := exec.Command("tc", "-n", ns.Name, "filter", "show", "dev", dev, "ingress").CombinedOutput()
		if s := strings.TrimSpace(string(out)); s != "" {
			t.Errorf("tc filters left on %s:\n%s", dev, s)
		}
	}
}

// AssertPristine fails unless the namespace is as NewNetns made it: lo and
// eth0 only, no tc filter and no ingress qdisc on eth0.
func (ns *Netns) AssertPristine(t *testing.T) {
	t.Helper()
	if got := strings.Join(ns.Links(t), " "); got != "lo eth0" {
		t.Errorf("links in the namespace after the container: %q, want %q", got, "lo eth0")
	}
	ns.AssertNoFilters(t, "eth0")
	out, _ := exec.Command("tc", "-n", ns.Name, "qdisc", "show", "dev", "eth0").CombinedOutput()
	if strings.Contains(string(out), "ingress") {
		t.Errorf("ingress qdisc left on eth0:\n%s", out)
	}
	if out, _ := IP("-n", ns.Name, "-4", "addr", "show", "dev", "eth0"); !strings.Contains(out, ns.ContainerIP()+"/24") {
		t.Errorf("eth0 lost its address %s:\n%s", ns.ContainerIP(), out)
	}
}

// WithNetns names the namespace in the spec and lets the process use
// ping's raw socket.
func WithNetns(path string) func(*specs.Spec) {
	return func(s *specs.Spec) {
		for i, n := range s.Linux.Namespaces {
			if n.Type == specs.NetworkNamespace {
				s.Linux.Namespaces[i].Path = path
			}
		}
		c := s.Process.Capabilities
		c.Bounding = append(c.Bounding, "CAP_NET_RAW")
		c.Effective = append(c.Effective, "CAP_NET_RAW")
		c.Permitted = append(c.Permitted, "CAP_NET_RAW")
	}
}
