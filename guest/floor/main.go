// Command floor is the /init of the benchmark "floor" initramfs: it powers
// the VM off the moment the kernel hands over, so that booting it measures
// the cost of the VM and kernel alone, with no agent work.
package main

import (
	"os"
	"syscall"
)

func main() {
	syscall.Sync()
	// Ends the VM the way skiff's agent does (agent/boot.go offCmd): power
	// off where the kernel has ACPI; without it (the minimal kernel on
	// microvm) power-off would halt with QEMU still running, so reboot,
	// which -no-reboot turns into QEMU's exit.
	cmd := syscall.LINUX_REBOOT_CMD_POWER_OFF
	os.Mkdir("/sys", 0o755)
	if syscall.Mount("sysfs", "/sys", "sysfs", 0, "") == nil {
		if _, err := os.Stat("/sys/firmware/acpi"); err != nil {
			cmd = syscall.LINUX_REBOOT_CMD_RESTART
		}
	}
	_ = syscall.Reboot(cmd)
}
