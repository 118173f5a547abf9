package hypervisor

import (
	"os"
	"runtime"
	"strings"
	"testing"
)

func TestNetDevicesArgs(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("expects q35's pci bus")
	}
	cfg := typicalConfig(t)
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg.NetDevices = []NetDevice{{Tap: f, MAC: "02:AA:bb:cc:dd:01"}, {Tap: f, MAC: "02:aa:bb:cc:dd:02"}}
	q, err := newQEMU(cfg)
	if err != nil {
		t.Fatal(err)
	}
	args := q.args()
	for _, want := range [][2]string{
		{"-netdev", "tap,id=net0,fd=3"},
		{"-device", "virtio-net-pci,netdev=net0,mac=02:aa:bb:cc:dd:01,romfile="},
		{"-netdev", "tap,id=net1,fd=4"},
		{"-device", "virtio-net-pci,netdev=net1,mac=02:aa:bb:cc:dd:02,romfile="},
	} {
		if !hasPair(args, want[0], want[1]) {
			t.Errorf("args lack %s %s:\n%s", want[0], want[1], strings.Join(args, " "))
		}
	}
	if files := netFiles(q.cfg.NetDevices); len(files) != 2 || files[0] != f {
		t.Errorf("netFiles = %v, want the two taps in order", files)
	}
}

func TestNetDevicesRefused(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for name, d := range map[string]NetDevice{
		"no tap":    {MAC: "02:00:00:00:00:01"},
		"bad MAC":   {Tap: f, MAC: "02:00:00:00:00"},
		"multicast": {Tap: f, MAC: "01:00:5e:00:00:01"},
	} {
		cfg := typicalConfig(t)
		cfg.NetDevices = []NetDevice{d}
		if _, err := newQEMU(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
