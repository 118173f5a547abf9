package tests

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// Rootless podman's default network, slirp4netns: a tap in the
// container's namespace that slirp4netns serves from user space, MTU
// 65520, and with allow_host_loopback the host's 127.0.0.1 at 10.0.2.2.
// Any link that carries Ethernet frames is joined to the guest, a tap
// another program serves included.
func TestPodmanSlirp4netnsReachesHostLoopback(t *testing.T) {
	e2e.NewEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, "hello-host")
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	args := append([]string{"run", "--rm", "--network", "slirp4netns:allow_host_loopback=true"}, podmanLimits...)
	args = append(args, "--rootfs", e2e.PodmanRootfs(t), "/bin/sh", "-c",
		fmt.Sprintf("cat /sys/class/net/tap0/mtu; nc 10.0.2.2 %d", port))
	r := e2e.Podman(t, nil, args...)
	if r.Code != 0 || !strings.Contains(r.Stdout, "65520") || !strings.Contains(r.Stdout, "hello-host") {
		t.Errorf("slirp4netns with allow_host_loopback: want MTU 65520 and the host's listener; got %v", r)
	}
}
