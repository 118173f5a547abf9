package seccomp

import "golang.org/x/sys/unix"

const (
	auditArch = unix.AUDIT_ARCH_AARCH64
	x32Bit    = 0
)

// Supported reports whether Filter has this architecture's numbers.
func Supported() bool { return true }

// calls: arm64 has only the *at forms.
func calls() []call { return commonCalls() }
