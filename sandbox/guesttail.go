package sandbox

import (
	"os"
	"strings"
	"time"
)

// guestPanicMarker starts the line in which the guest kernel says why it
// panicked; the call trace that follows can push it out of a short tail.
const guestPanicMarker = "Kernel panic - not syncing"

// consoleTail is the last n lines of a guest console log, preceded by the
// kernel's panic line when there is one above them: a boot that ends in a
// panic must explain itself, not only show a stack trace.
func consoleTail(path string, n int) string {
	t := tailLines(path, n)
	if t == "" || strings.Contains(t, guestPanicMarker) {
		return t
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return t
	}
	if len(b) > 64<<10 {
		b = b[len(b)-64<<10:]
	}
	s := strings.ReplaceAll(string(b), "\r", "")
	i := strings.LastIndex(s, guestPanicMarker)
	if i < 0 {
		return t
	}
	start := strings.LastIndexByte(s[:i], '\n') + 1
	line, _, _ := strings.Cut(s[start:], "\n")
	return line + "\n[...]\n" + t
}

// lostVMReason says why the container's VM went away, for the log line
// containerd reports: QEMU's own exit (the signal that killed it, or its
// status and the end of its stderr) once it has exited, else what the
// agent channel said. QEMU's exit may trail the channel's end a little.
func (s *shim) lostVMReason(err error) string {
	select {
	case <-s.vmExited:
		if verr := s.vm.Wait(); verr != nil {
			return verr.Error()
		}
		return "qemu exited (the guest powered off or rebooted)"
	case <-time.After(2 * time.Second):
		return err.Error()
	}
}
