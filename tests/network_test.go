package tests

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// netns is a network namespace made the way CNI plugins or a script with
// `ip netns` make one: a veth pair with eth0 inside (10.200.N.2/24, default
// route via the host side, fd00:200:N::2/64) and the host side
// (10.200.N.1/24, fd00:200:N::1/64) outside.
type netns struct {
	name string // under /var/run/netns
	path string
	host string // the host-side veth
	n    int
}

func (ns *netns) hostIP() string       { return fmt.Sprintf("10.200.%d.1", ns.n) }
func (ns *netns) containerIP() string  { return fmt.Sprintf("10.200.%d.2", ns.n) }
func (ns *netns) hostIP6() string      { return fmt.Sprintf("fd00:200:%d::1", ns.n) }
func (ns *netns) containerIP6() string { return fmt.Sprintf("fd00:200:%d::2", ns.n) }

func ipCmd(args ...string) (string, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// newNetns claims a free N (the namespace name is the claim: `ip netns
// add` refuses an existing one, so parallel tests and suites never share
// a subnet) and builds the namespace. It is deleted when the test ends.
func newNetns(t *testing.T) *netns {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
	for n := 10; n < 250; n++ {
		ns := &netns{name: fmt.Sprintf("skiff-e2e-%d", n), host: fmt.Sprintf("skiffe2e%d", n), n: n}
		ns.path = "/var/run/netns/" + ns.name
		if _, err := ipCmd("netns", "add", ns.name); err != nil {
			continue
		}
		t.Cleanup(func() { ipCmd("netns", "del", ns.name) })
		ip := func(args ...string) {
			t.Helper()
			if _, err := ipCmd(args...); err != nil {
				t.Fatal(err)
			}
		}
		// A host-side veth left by a crashed run of this N goes first.
		ipCmd("link", "del", ns.host)
		ip("link", "add", ns.host, "type", "veth", "peer", "name", "eth0", "netns", ns.name)
		ip("addr", "add", ns.hostIP()+"/24", "dev", ns.host)
		ip("addr", "add", ns.hostIP6()+"/64", "dev", ns.host, "nodad")
		ip("link", "set", ns.host, "up")
		ip("-n", ns.name, "addr", "add", ns.containerIP()+"/24", "dev", "eth0")
		ip("-n", ns.name, "addr", "add", ns.containerIP6()+"/64", "dev", "eth0", "nodad")
		ip("-n", ns.name, "link", "set", "eth0", "up")
		ip("-n", ns.name, "link", "set", "lo", "up")
		ip("-n", ns.name, "route", "add", "default", "via", ns.hostIP())
		return ns
	}
	t.Fatal("no free 10.200.N.0/24 namespace between 10 and 249")
	return nil
}

// links lists the namespace's interface names.
func (ns *netns) links(t *testing.T) []string {
	t.Helper()
	out, err := ipCmd("-n", ns.name, "-o", "link", "show")
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

// assertPristine fails unless the namespace is as newNetns made it: lo and
// eth0 only, no tc filter and no ingress qdisc on eth0.
func (ns *netns) assertPristine(t *testing.T) {
	t.Helper()
	if got := strings.Join(ns.links(t), " "); got != "lo eth0" {
		t.Errorf("links in the namespace after the container: %q, want %q", got, "lo eth0")
	}
	out, err := exec.Command("tc", "-n", ns.name, "filter", "show", "dev", "eth0", "ingress").CombinedOutput()
	if s := strings.TrimSpace(string(out)); err == nil && s != "" {
		t.Errorf("tc filters left on eth0:\n%s", s)
	}
	out, _ = exec.Command("tc", "-n", ns.name, "qdisc", "show", "dev", "eth0").CombinedOutput()
	if strings.Contains(string(out), "ingress") {
		t.Errorf("ingress qdisc left on eth0:\n%s", out)
	}
	if out, _ := ipCmd("-n", ns.name, "-4", "addr", "show", "dev", "eth0"); !strings.Contains(out, ns.containerIP()+"/24") {
		t.Errorf("eth0 lost its address %s:\n%s", ns.containerIP(), out)
	}
}

// withNetns names the namespace in the spec and lets the process use
// ping's raw socket.
func withNetns(path string) func(*specs.Spec) {
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

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// A container given a namespace with a veth in it is on that network: it
// pings the host side over IPv4 and IPv6, moves data both ways over a TCP connection it
// opens, and serves a connection the host side opens. Afterwards the
// namespace is exactly as it was handed over.
func TestNetworkNamespace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ns := newNetns(t)

	ln, err := net.Listen("tcp", ns.hostIP()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	// The container sends `seq 1 20000` (108894 bytes) and prints what the
	// host sends back; then it echoes whatever the host sends it.
	var want bytes.Buffer
	for i := 1; i <= 20000; i++ {
		fmt.Fprintf(&want, "%d\n", i)
	}
	reply := randomHex(t, 16<<10)
	script := fmt.Sprintf(`set -e
busybox ping -c1 -W5 %s
busybox ping -6 -c1 -W5 %s
echo PING-OK
reply=$(busybox seq 1 20000 | busybox nc %s %d)
echo "REPLY=$reply"
echo LISTENING
busybox nc -l -p 7000 -e /bin/cat
echo SERVED`, ns.hostIP(), ns.hostIP6(), ns.hostIP(), port)
	b := e.bundle("c", sh(script), withNetns(ns.path))
	id := e.id("net")
	pid, out := e.create(id, b)

	got := make(chan []byte, 1)
	go func() {
		defer close(got)
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(stopTimeout + cmdTimeout))
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(stopTimeout))
		// The container half-closes when its input ends.
		data, _ := io.ReadAll(c)
		got <- data
		io.WriteString(c, reply)
	}()
	if isSkiff {
		if links := ns.links(t); !contains(links, "tap0_skiff") {
			t.Errorf("links in the namespace of a running container: %v, want a tap0_skiff", links)
		}
	}
	e.mustOK(e.rt("start", id))

	e.waitOutput(out, "PING-OK")
	select {
	case data := <-got:
		if !bytes.Equal(data, want.Bytes()) {
			t.Errorf("the host received %d bytes from the container, want the %d of seq 1 20000 (first difference at %d)", len(data), want.Len(), firstDiff(data, want.Bytes()))
		}
	case <-time.After(stopTimeout):
		t.Fatalf("no connection from the container within %v; output so far:\n%s\nstderr:\n%s", stopTimeout, readFile(out), readFile(strings.Replace(out, "stdout-", "stderr-", 1)))
	}
	text := e.waitOutput(out, "LISTENING")
	if !strings.Contains(text, "REPLY="+reply+"\n") {
		t.Errorf("the container did not print the host's %d-byte reply intact; output:\n%.400s", len(reply), text)
	}

	// Now the other way: the host connects to the container's server.
	payload := randomHex(t, 32<<10)
	var conn net.Conn
	deadline := time.Now().Add(stopTimeout)
	for {
		conn, err = net.DialTimeout("tcp", ns.containerIP()+":7000", 2*time.Second)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("connect to the container's server at %s:7000: %v", ns.containerIP(), err)
	}
	conn.SetDeadline(time.Now().Add(stopTimeout))
	go func() {
		io.WriteString(conn, payload)
		conn.(*net.TCPConn).CloseWrite()
	}()
	echoed, err := io.ReadAll(conn)
	conn.Close()
	if err != nil || string(echoed) != payload {
		t.Errorf("the container's echo server returned %d bytes (err %v), want the %d sent", len(echoed), err, len(payload))
	}

	e.waitOutput(out, "SERVED")
	e.waitGone(pid)
	e.mustOK(e.rt("delete", id))
	e.assertNoLeaks()
	ns.assertPristine(t)
}

// A namespace without a path is a new, empty one: loopback only, and up,
// as runc gives; for a process exec'd into the container too. (In a VM
// restored from a template the guest has an unused NIC: the container gets
// a network namespace of its own in the guest.)
func TestNetworkNewNamespaceLoopbackOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const show = "cat /proc/net/dev; echo lo-flags=$(cat /sys/class/net/lo/flags); ls /sys/class/net | tr '\\n' ' '; echo"
	b := e.bundle("c", sh(show+"; echo started; sleep 600"))
	id := e.id("c")
	_, out := e.create(id, b)
	e.mustOK(e.rt("start", id))
	initOut := e.waitOutput(out, "started")
	r := e.mustOK(e.rt("exec", id, "/bin/sh", "-c", show))
	for who, got := range map[string]string{"init": initOut, "exec": r.stdout} {
		if devs := netDevices(got); devs != "lo" {
			t.Errorf("interfaces the container's %s sees: %q, want only lo\n%s", who, devs, got)
		}
		// IFF_UP|IFF_LOOPBACK, and only lo in the container's sysfs.
		if kv := keyValues(got); kv["lo-flags"] != "0x9" {
			t.Errorf("lo flags for the container's %s: %q, want 0x9 (up)", who, kv["lo-flags"])
		}
		if !strings.Contains(got, "\nlo \n") {
			t.Errorf("/sys/class/net for the container's %s is not lo alone:\n%s", who, got)
		}
	}
	e.mustOK(e.rt("delete", "--force", id))
}

// network_model = "none": the namespace the spec names is left alone and
// the guest has loopback only.
func TestNetworkModelNone(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	ns := newNetns(t)
	cfg := filepath.Join(e.dir, "none.toml")
	if err := os.WriteFile(cfg, []byte("[runtime]\nnetwork_model = \"none\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := e.bundle("c", sh("cat /proc/net/dev"), withNetns(ns.path))
	r := e.mustOK(e.rt("--config", cfg, "run", "--bundle", b, e.id("c")))
	if got := netDevices(r.stdout); got != "lo" {
		t.Errorf("interfaces in the container: %q, want only lo\n%s", got, r.stdout)
	}
	ns.assertPristine(t)
}

// A shim killed under a running container leaves its VM, tap and filters;
// `delete --force` removes them all and leaves the namespace as handed over.
func TestNetworkDeleteForceAfterShimCrash(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	ns := newNetns(t)
	b := e.bundle("c", sh("echo UP; while true; do sleep 1; done"), withNetns(ns.path))
	id := e.id("crash")
	pid, out := e.create(id, b)
	e.mustOK(e.rt("start", id))
	e.waitOutput(out, "UP")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.waitGone(pid)
	e.mustOK(e.rt("delete", "--force", id))
	e.assertNoLeaks()
	ns.assertPristine(t)
}

// netDevices lists the interface names in /proc/net/dev output.
func netDevices(procNetDev string) string {
	var names []string
	for _, line := range strings.Split(procNetDev, "\n") {
		if name, _, ok := strings.Cut(line, ":"); ok && !strings.Contains(name, "|") {
			names = append(names, strings.TrimSpace(name))
		}
	}
	return strings.Join(names, " ")
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if i >= len(b) || a[i] != b[i] {
			return i
		}
	}
	return len(a)
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// The files a caller prepares for the namespace (podman and CNI write
// resolv.conf, hosts and hostname and bind-mount them) reach the guest.
func TestNetworkFilesBindMounted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ns := newNetns(t)
	// A rootfs of its own with the mount points: the shared fixture is
	// never written to.
	rootfs := filepath.Join(e.dir, "rootfs")
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile(filepath.Join(rootfsDir, "bin", "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", "sh")); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"resolv.conf": "nameserver " + ns.hostIP() + "\n",
		"hosts":       "127.0.0.1 localhost\n" + ns.containerIP() + " c1\n",
		"hostname":    "c1\n",
	}
	var mounts []specs.Mount
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(rootfs, "etc", name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		src := filepath.Join(e.dir, name)
		if err := os.WriteFile(src, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		mounts = append(mounts, specs.Mount{Destination: "/etc/" + name, Type: "bind", Source: src, Options: []string{"rbind", "ro"}})
	}
	b := e.bundle("c", sh("cat /etc/resolv.conf /etc/hosts /etc/hostname"), withNetns(ns.path), func(s *specs.Spec) {
		s.Root.Path = rootfs
		s.Mounts = append(s.Mounts, mounts...)
	})
	r := e.mustOK(e.rt("run", "--bundle", b, e.id("c")))
	if want := files["resolv.conf"] + files["hosts"] + files["hostname"]; r.stdout != want {
		t.Errorf("the container read %q, want %q", r.stdout, want)
	}
	ns.assertPristine(t)
}

// Every interface of the namespace becomes a guest NIC with its name and
// address, whatever names the guest kernel first gave its NICs.
func TestNetworkTwoInterfaces(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ns := newNetns(t)
	host2 := ns.host + "b"
	hostIP2, ctrIP2 := fmt.Sprintf("10.201.%d.1", ns.n), fmt.Sprintf("10.201.%d.2", ns.n)
	ipCmd("link", "del", host2) // left by a crashed run
	for _, args := range [][]string{
		{"link", "add", host2, "type", "veth", "peer", "name", "net1", "netns", ns.name},
		{"addr", "add", hostIP2 + "/24", "dev", host2},
		{"link", "set", host2, "up"},
		{"-n", ns.name, "link", "set", "net1", "mtu", "1400"},
		{"-n", ns.name, "addr", "add", ctrIP2 + "/24", "dev", "net1"},
		{"-n", ns.name, "link", "set", "net1", "up"},
	} {
		if _, err := ipCmd(args...); err != nil {
			t.Fatal(err)
		}
	}
	script := fmt.Sprintf(`set -e
busybox ping -c1 -W5 %s >/dev/null
busybox ping -c1 -W5 %s >/dev/null
echo "net1=$(cat /sys/class/net/net1/mtu) $(busybox ip -o -4 addr show dev net1 | busybox awk '{print $4}')"
echo "eth0=$(cat /sys/class/net/eth0/mtu) $(busybox ip -o -4 addr show dev eth0 | busybox awk '{print $4}')"`,
		ns.hostIP(), hostIP2)
	b := e.bundle("c", sh(script), withNetns(ns.path))
	r := e.mustOK(e.rt("run", "--bundle", b, e.id("c")))
	kv := keyValues(r.stdout)
	wantKV(t, kv, "eth0", "1500 "+ns.containerIP()+"/24")
	wantKV(t, kv, "net1", "1400 "+ctrIP2+"/24")
	if got := strings.Join(ns.links(t), " "); got != "lo eth0 net1" {
		t.Errorf("links in the namespace after the container: %q, want %q", got, "lo eth0 net1")
	}
	for _, dev := range []string{"eth0", "net1"} {
		if out, _ := exec.Command("tc", "-n", ns.name, "filter", "show", "dev", dev, "ingress").CombinedOutput(); strings.TrimSpace(string(out)) != "" {
			t.Errorf("tc filters left on %s:\n%s", dev, out)
		}
	}
}

// A namespace path that does not exist is refused with a message naming
// it, before anything is made.
func TestNetworkNamespaceMissing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	missing := filepath.Join(e.dir, "no-such-netns")
	b := e.bundle("c", []string{"true"}, withNetns(missing))
	id := e.id("c")
	msg := e.mustFail(e.rt("run", "--bundle", b, id))
	if isSkiff && !strings.Contains(msg, missing) {
		t.Errorf("the error does not name %s: %q", missing, msg)
	}
	e.assertNothingFor(id)
}
