// Command floor is the /init of the benchmark "floor" initramfs: it powers
// the VM off the moment the kernel hands over, so that booting it measures
// the cost of the VM and kernel alone, with no agent work.
package main

import "syscall"

func main() {
	syscall.Sync()
	// Without a power-off method (no ACPI) this returns; PID 1 then exits
	// and the kernel panics, which with panic=-1 and -no-reboot stops QEMU too.
	_ = syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}
