package tests

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

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
	e := e2e.NewEnv(t)
	ns := e2e.NewNetns(t)

	ln, err := net.Listen("tcp", ns.HostIP()+":0")
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
echo SERVED`, ns.HostIP(), ns.HostIP6(), ns.HostIP(), port)
	b := e.Bundle("c", e2e.Sh(script), e2e.WithNetns(ns.Path))
	id := e.ID("net")
	pid, out := e.Create(id, b)

	got := make(chan []byte, 1)
	go func() {
		defer close(got)
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(e2e.StopTimeout + e2e.CmdTimeout))
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(e2e.StopTimeout))
		// The container half-closes when its input ends.
		data, _ := io.ReadAll(c)
		got <- data
		io.WriteString(c, reply)
	}()
	e.Step("tap in the namespace", func(e *e2e.Env) {
		e2e.SkiffOnly(e.T)
		if links := ns.Links(e.T); !slices.Contains(links, "tap0_skiff") {
			e.T.Errorf("links in the namespace of a created container: %v, want a tap0_skiff", links)
		}
	})
	e.MustOK(e.RT("start", id))

	e.Step("ping over IPv4 and IPv6", func(e *e2e.Env) {
		e.WaitOutput(out, "PING-OK")
	})

	e.Step("TCP from the container", func(e *e2e.Env) {
		t := e.T
		select {
		case data := <-got:
			if !bytes.Equal(data, want.Bytes()) {
				t.Errorf("the host received %d bytes from the container, want the %d of seq 1 20000 (first difference at %d)", len(data), want.Len(), firstDiff(data, want.Bytes()))
			}
		case <-time.After(e2e.StopTimeout):
			t.Fatalf("no connection from the container within %v; output so far:\n%s\nstderr:\n%s", e2e.StopTimeout, readFile(out), readFile(strings.Replace(out, "stdout-", "stderr-", 1)))
		}
		text := e.WaitOutput(out, "LISTENING")
		if !strings.Contains(text, "REPLY="+reply+"\n") {
			t.Errorf("the container did not print the host's %d-byte reply intact; output:\n%.400s", len(reply), text)
		}
	})

	e.Step("TCP to the container", func(e *e2e.Env) {
		t := e.T
		payload := randomHex(t, 32<<10)
		var conn net.Conn
		dial := func() bool {
			conn, err = net.DialTimeout("tcp", ns.ContainerIP()+":7000", 2*time.Second)
			return err == nil
		}
		e.Poll(dial, func() string {
			return fmt.Sprintf("connect to the container's server at %s:7000: %v", ns.ContainerIP(), err)
		})
		conn.SetDeadline(time.Now().Add(e2e.StopTimeout))
		go func() {
			io.WriteString(conn, payload)
			conn.(*net.TCPConn).CloseWrite()
		}()
		echoed, err := io.ReadAll(conn)
		conn.Close()
		if err != nil || string(echoed) != payload {
			t.Errorf("the container's echo server returned %d bytes (err %v), want the %d sent", len(echoed), err, len(payload))
		}
	})

	e.WaitOutput(out, "SERVED")
	e.WaitGone(pid)
	e.MustOK(e.RT("delete", id))
	e.AssertNoLeaks()
	ns.AssertPristine(t)
}

// A namespace without a path is a new, empty one: loopback only, and up,
// as runc gives; for a process exec'd into the container too. (In a VM
// restored from a template the guest has an unused NIC: the container gets
// a network namespace of its own in the guest.)
func TestNetworkNewNamespaceLoopbackOnly(t *testing.T) {
	e := e2e.NewEnv(t)
	const show = "cat /proc/net/dev; echo lo-flags=$(cat /sys/class/net/lo/flags); ls /sys/class/net | tr '\\n' ' '; echo"
	b := e.Bundle("c", e2e.Sh(show+"; echo started; sleep 600"))
	id := e.ID("c")
	_, out := e.CreateStarted(id, b, "started")
	initOut := e.WaitOutput(out, "started")
	r := e.MustOK(e.RT("exec", id, "/bin/sh", "-c", show))
	for who, got := range map[string]string{"init": initOut, "exec": r.Stdout} {
		if devs := netDevices(got); devs != "lo" {
			t.Errorf("interfaces the container's %s sees: %q, want only lo\n%s", who, devs, got)
		}
		// IFF_UP|IFF_LOOPBACK, and only lo in the container's sysfs.
		if kv := e2e.KeyValues(got); kv["lo-flags"] != "0x9" {
			t.Errorf("lo flags for the container's %s: %q, want 0x9 (up)", who, kv["lo-flags"])
		}
		if !strings.Contains(got, "\nlo \n") {
			t.Errorf("/sys/class/net for the container's %s is not lo alone:\n%s", who, got)
		}
	}
	e.MustOK(e.RT("delete", "--force", id))
}

// network_model = "none": the namespace the spec names is left alone and
// the guest has loopback only.
func TestNetworkModelNone(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	ns := e2e.NewNetns(t)
	cfg := e.WriteFile("none.toml", "[runtime]\nnetwork_model = \"none\"\n")
	b := e.Bundle("c", e2e.Sh("cat /proc/net/dev"), e2e.WithNetns(ns.Path))
	r := e.MustOK(e.RT("--config", cfg, "run", "--bundle", b, e.ID("c")))
	if got := netDevices(r.Stdout); got != "lo" {
		t.Errorf("interfaces in the container: %q, want only lo\n%s", got, r.Stdout)
	}
	ns.AssertPristine(t)
}

// A shim killed under a running container leaves its VM, tap and filters;
// `delete --force` removes them all and leaves the namespace as handed over.
func TestNetworkDeleteForceAfterShimCrash(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	ns := e2e.NewNetns(t)
	b := e.Bundle("c", e2e.Sh("echo UP; while true; do sleep 1; done"), e2e.WithNetns(ns.Path))
	id := e.ID("crash")
	pid, _ := e.CreateStarted(id, b, "UP")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.WaitGone(pid)
	e.MustOK(e.RT("delete", "--force", id))
	e.AssertNoLeaks()
	ns.AssertPristine(t)
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
	e := e2e.NewEnv(t)
	ns := e2e.NewNetns(t)
	// A rootfs of its own with the mount points: the shared fixture is
	// never written to.
	rootfs := e.Mkdir("rootfs")
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp"} {
		e.Mkdir(filepath.Join("rootfs", d))
	}
	bb, err := os.ReadFile(filepath.Join(e2e.RootfsDir(), "bin", "busybox"))
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
		"resolv.conf": "nameserver " + ns.HostIP() + "\n",
		"hosts":       "127.0.0.1 localhost\n" + ns.ContainerIP() + " c1\n",
		"hostname":    "c1\n",
	}
	var mounts []specs.Mount
	for name, content := range files {
		e.WriteFile(filepath.Join("rootfs", "etc", name), "") // the mount point
		mounts = append(mounts, e2e.Bind("/etc/"+name, e.WriteFile(name, content), "rbind", "ro"))
	}
	b := e.Bundle("c", e2e.Sh("cat /etc/resolv.conf /etc/hosts /etc/hostname"), e2e.WithNetns(ns.Path), e2e.Mounts(mounts...), func(s *specs.Spec) {
		s.Root.Path = rootfs
	})
	r := e.MustOK(e.RT("run", "--bundle", b, e.ID("c")))
	if want := files["resolv.conf"] + files["hosts"] + files["hostname"]; r.Stdout != want {
		t.Errorf("the container read %q, want %q", r.Stdout, want)
	}
	ns.AssertPristine(t)
}

// Every interface of the namespace becomes a guest NIC with its name and
// address, whatever names the guest kernel first gave its NICs.
func TestNetworkTwoInterfaces(t *testing.T) {
	e := e2e.NewEnv(t)
	ns := e2e.NewNetns(t)
	host2 := ns.Host + "b"
	hostIP2, ctrIP2 := fmt.Sprintf("10.201.%d.1", ns.N), fmt.Sprintf("10.201.%d.2", ns.N)
	e2e.IP("link", "del", host2) // left by a crashed run
	e2e.MustIP(t,
		[]string{"link", "add", host2, "type", "veth", "peer", "name", "net1", "netns", ns.Name},
		[]string{"addr", "add", hostIP2 + "/24", "dev", host2},
		[]string{"link", "set", host2, "up"},
		[]string{"-n", ns.Name, "link", "set", "net1", "mtu", "1400"},
		[]string{"-n", ns.Name, "addr", "add", ctrIP2 + "/24", "dev", "net1"},
		[]string{"-n", ns.Name, "link", "set", "net1", "up"})
	script := fmt.Sprintf(`set -e
busybox ping -c1 -W5 %s >/dev/null
busybox ping -c1 -W5 %s >/dev/null
echo "net1=$(cat /sys/class/net/net1/mtu) $(busybox ip -o -4 addr show dev net1 | busybox awk '{print $4}')"
echo "eth0=$(cat /sys/class/net/eth0/mtu) $(busybox ip -o -4 addr show dev eth0 | busybox awk '{print $4}')"`,
		ns.HostIP(), hostIP2)
	b := e.Bundle("c", e2e.Sh(script), e2e.WithNetns(ns.Path))
	r := e.MustOK(e.RT("run", "--bundle", b, e.ID("c")))
	kv := e2e.KeyValues(r.Stdout)
	e2e.WantKV(t, kv, "eth0", "1500 "+ns.ContainerIP()+"/24")
	e2e.WantKV(t, kv, "net1", "1400 "+ctrIP2+"/24")
	if got := strings.Join(ns.Links(t), " "); got != "lo eth0 net1" {
		t.Errorf("links in the namespace after the container: %q, want %q", got, "lo eth0 net1")
	}
	ns.AssertNoFilters(t, "eth0", "net1")
}

// A namespace path that does not exist is refused with a message naming
// it, before anything is made.
func TestNetworkNamespaceMissing(t *testing.T) {
	e := e2e.NewEnv(t)
	missing := filepath.Join(e.Dir, "no-such-netns")
	b := e.Bundle("c", []string{"true"}, e2e.WithNetns(missing))
	id := e.ID("c")
	msg := e.MustFail(e.RT("run", "--bundle", b, id))
	if e2e.IsSkiff() && !strings.Contains(msg, missing) {
		t.Errorf("the error does not name %s: %q", missing, msg)
	}
	e.AssertNothingFor(id)
}
