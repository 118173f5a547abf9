//go:build !amd64 && !arm64

package seccomp

const (
	auditArch = 0
	x32Bit    = 0
)

// Supported reports whether Filter has this architecture's numbers: not
// on this one (big-endian machines would also need the argument offsets
// changed).
func Supported() bool { return false }

func calls() []call { return nil }
