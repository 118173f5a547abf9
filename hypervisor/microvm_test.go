package hypervisor

import (
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestMicrovmDevicesAndCmdline(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("microvm defaults are amd64's")
	}
	cfg := typicalConfig(t)
	cfg.Machine = "microvm,acpi=off,pic=on,pit=on,rtc=on"
	q, err := newQEMU(cfg)
	if err != nil {
		t.Fatal(err)
	}
	args := q.args()
	if !hasPair(args, "-device", "virtio-serial-device,id=vser0") ||
		!hasPair(args, "-machine", "microvm,acpi=off,pic=on,pit=on,rtc=on,accel=tcg") {
		t.Errorf("microvm args: %q", args)
	}
	if cmdline := args[slices.Index(args, "-append")+1]; !strings.Contains(cmdline, " noapictimer") {
		t.Errorf("microvm cmdline lacks noapictimer: %q", cmdline)
	}
	if strings.Contains(strings.Join(archTable["amd64"].cmdline, " "), "noapictimer") {
		t.Error("the arch table's cmdline was changed in place")
	}

	// More virtio devices than microvm's 8 transports (acpi=off): the PCI
	// machine, without microvm's command line.
	for len(cfg.Shares) < 8 {
		cfg.Shares = append(cfg.Shares, Share{Tag: "x" + string(rune('a'+len(cfg.Shares))), HostPath: t.TempDir()})
	}
	q, err = newQEMU(cfg)
	if err != nil {
		t.Fatal(err)
	}
	args = q.args()
	if !hasPair(args, "-machine", machineArg("q35")+",accel=tcg") || !hasPair(args, "-device", "virtio-serial-pci,id=vser0") ||
		strings.Contains(args[slices.Index(args, "-append")+1], "noapictimer") {
		t.Errorf("9 devices on microvm should fall back to q35: %q", args)
	}
	if got := MaxVirtioDevices("microvm,acpi=off"); got != 8 {
		t.Errorf("MaxVirtioDevices(microvm,acpi=off) = %d", got)
	}
	if got := MaxVirtioDevices("microvm"); got != 24 {
		t.Errorf("MaxVirtioDevices(microvm) = %d", got)
	}
	if got := MaxVirtioDevices("q35"); got != 0 {
		t.Errorf("MaxVirtioDevices(q35) = %d", got)
	}
}
