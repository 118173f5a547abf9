package hypervisor

import (
	"fmt"
	"runtime"
	"strings"
)

// archDefaults is what differs between host architectures: which QEMU
// binary emulates the host, the machine type that boots a stock distribution
// kernel with virtio devices, the console the kernel must be pointed at, and
// the bus suffix of virtio devices on that machine.
type archDefaults struct {
	binary  string
	machine string
	console string
	// bus is appended to virtio device names: "pci", "ccw" or "device"
	// (virtio-mmio, for microvm).
	bus string
	// cmdline is the default kernel command line after console=.
	cmdline []string
	// microvmCmdline is added to cmdline on the microvm machine.
	microvmCmdline []string
}

// leanMachines turns off, per machine type, the board devices QEMU 7.2
// creates by default that no skiff guest uses: each one is code a hostile
// guest can reach (vmport is VMware's backdoor port; SMBus, SATA, HPET,
// the PS/2 controller and SMM emulation are device models with their own
// history of bugs). The guest keeps what its kernel needs: PIC, PIT, RTC,
// ACPI, the serial port and virtio. An option the configured machine
// string already sets is left as configured. microvm is lean by design.
var leanMachines = map[string][]string{
	"q35": {"vmport=off", "smbus=off", "sata=off", "hpet=off", "i8042=off", "smm=off", "usb=off"},
}

// vmgenidMachines are the machines whose guests learn from QEMU's vmgenid
// device (described in ACPI) that they were copied: every QEMU process
// gives it a new GUID, which a clone restored from a template writes into
// guest memory on restore, and notifies; the guest kernel (CONFIG_VMGENID)
// then reseeds its random number generator, so that clones of one template
// do not draw the same keys. It needs ACPI.
var vmgenidMachines = map[string]bool{"q35": true, "pc": true}

// hasVMGenID tells whether a VM on machine gets a vmgenid device.
func hasVMGenID(machine string) bool {
	if runtime.GOARCH != "amd64" || !vmgenidMachines[machineType(machine)] {
		return false
	}
	for _, o := range strings.Split(machine, ",")[1:] {
		if o == "acpi=off" {
			return false
		}
	}
	return true
}

// deviceModelVersion changes whenever the devices skiff gives a VM change
// in a way options do not show (a device added to every VM, say): a saved
// template holds device state, and a clone must have the same devices.
const deviceModelVersion = 6 // 6: the hot-plug slots (hotplug.go)

// DeviceModel names the device set of a VM on machine, beyond what the
// machine string itself says: template keys include it, so that a skiff
// that changes the devices never restores a template saved by another.
func DeviceModel(machine string) string {
	return fmt.Sprintf("v%d %s vmgenid=%t hotplug=%t", deviceModelVersion, strings.Join(leanOptions(machine), ","), hasVMGenID(machine), CanHotplugDisk(machine))
}

// leanOptions are the options of leanMachines that machine does not set
// itself.
func leanOptions(machine string) []string {
	set := map[string]bool{}
	for _, o := range strings.Split(machine, ",")[1:] {
		k, _, _ := strings.Cut(o, "=")
		set[k] = true
	}
	var out []string
	for _, o := range leanMachines[machineType(machine)] {
		k, _, _ := strings.Cut(o, "=")
		if !set[k] {
			out = append(out, o)
		}
	}
	return out
}

// genericCmdline works on every architecture: no reboot loop after a guest
// panic (QEMU runs with -no-reboot, so the VMM exits), little console noise.
var genericCmdline = []string{"quiet", "panic=-1"}

var archTable = map[string]archDefaults{
	"amd64": {
		binary: "qemu-system-x86_64", machine: "q35", console: "ttyS0", bus: "pci",
		// The x86-only options skip work a VM does not need: timer and TSC
		// calibration (lpj, tsc, no_timer_check), probing absent UARTs,
		// KASLR relocation, and a triple-fault reboot instead of BIOS.
		cmdline: append(genericCmdline[:len(genericCmdline):len(genericCmdline)],
			"reboot=t", "nokaslr", "no_timer_check", "tsc=reliable",
			"lpj=5000000", "8250.nr_uarts=1"),
		// microvm has no PCI and, with acpi=off, no HPET: skipping the
		// LAPIC timer's calibration against the PIT saves ~0.25 s under
		// TCG (GUEST-NOTES.md).
		microvmCmdline: []string{"noapictimer"},
	},
	"arm64":   {binary: "qemu-system-aarch64", machine: "virt", console: "ttyAMA0", bus: "pci", cmdline: genericCmdline},
	"ppc64le": {binary: "qemu-system-ppc64", machine: "pseries", console: "hvc0", bus: "pci", cmdline: genericCmdline},
	"s390x":   {binary: "qemu-system-s390x", machine: "s390-ccw-virtio", console: "ttysclp0", bus: "ccw", cmdline: genericCmdline},
}

// hostArch returns the defaults for the architecture skiff runs on. The
// second result is false on an architecture skiff has no defaults for.
func hostArch() (archDefaults, bool) {
	d, ok := archTable[runtime.GOARCH]
	return d, ok
}

// DefaultBinary is the QEMU executable name for this host architecture
// (looked up in PATH when Config.Binary is empty), or "" if unsupported.
func DefaultBinary() string {
	d, _ := hostArch()
	return d.binary
}

// machineType is the machine name without its options ("microvm" for
// "microvm,acpi=off").
func machineType(machine string) string {
	t, _, _ := strings.Cut(machine, ",")
	return t
}

// microvmTransports is how many virtio-mmio devices QEMU's microvm machine
// has room for: 8 with acpi=off (QEMU 7.2; the second IO-APIC that brings
// 24 needs ACPI to be described), 24 otherwise.
func microvmTransports(machine string) int {
	for _, o := range strings.Split(machine, ",")[1:] {
		if o == "acpi=off" {
			return 8
		}
	}
	return 24
}

// MaxVirtioDevices is how many virtio devices (the agent's serial port,
// shares, NICs) a VM on machine can have; 0 means no limit skiff knows of.
// A Config with more on microvm runs on the architecture's PCI machine.
func MaxVirtioDevices(machine string) int {
	if machineType(machine) == "microvm" {
		return microvmTransports(machine)
	}
	return 0
}
