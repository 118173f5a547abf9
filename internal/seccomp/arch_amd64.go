package seccomp

import "golang.org/x/sys/unix"

const (
	auditArch = unix.AUDIT_ARCH_X86_64
	// x32Bit marks the x32 ABI's system calls, which share the x86-64
	// audit architecture.
	x32Bit = 0x40000000
)

// Supported reports whether Filter has this architecture's numbers.
func Supported() bool { return true }

// calls adds x86-64's older forms of the same calls.
func calls() []call {
	return append(commonCalls(),
		call{nr: unix.SYS_CHMOD, kind: modeArg, mode: 1},
		call{nr: unix.SYS_MKDIR, kind: modeArg, mode: 1},
		call{nr: unix.SYS_CREAT, kind: modeArg, mode: 1},
		call{nr: unix.SYS_OPEN, kind: createArg, flags: 1, mode: 2},
		call{nr: unix.SYS_MKNOD, kind: mknodArg, mode: 1},
	)
}
