package container

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

func uintptrOf(p *uint32) uintptr { return uintptr(unsafe.Pointer(p)) }

// capNames is the kernel's capability numbering, as the protocol lists
// it for the host's features document.
var capNames = protocol.Capabilities()

// capSet turns capability names into a 64-bit mask. Names this kernel
// table does not know are ignored, as runc does with a warning.
func capSet(names []string) uint64 {
	var m uint64
	for _, n := range names {
		for i, c := range capNames {
			if strings.EqualFold(n, c) {
				m |= 1 << uint(i)
			}
		}
	}
	return m
}

// lastCap is the guest kernel's highest capability. Read once per
// process (a zygote reads it before it waits): a procfs read is a path a
// clone's TCG translates anew. Raw system calls, not os: an os.File would
// start the Go runtime's poller in the zygote, whose descriptors the
// container's then overwrite (the runtime throws).
var lastCap = sync.OnceValue(func() int {
	fd, err := unix.Open("/proc/sys/kernel/cap_last_cap", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err == nil {
		var b [16]byte
		n, rerr := unix.Read(fd, b[:])
		unix.Close(fd)
		if rerr == nil && n > 0 {
			if last, err := strconv.Atoi(strings.TrimSpace(string(b[:n]))); err == nil {
				return last
			}
		}
	}
	return len(capNames) - 1
})

func dropBounding(names []string) error {
	keep := capSet(names)
	last := min(lastCap(), 63)
	for c := 0; c <= last; c++ {
		if keep&(1<<uint(c)) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("drop bounding capability %d: %w", c, err)
		}
	}
	return nil
}

// setCaps sets this thread's effective, permitted and inheritable sets and
// raises the ambient ones it can, which is what a non-root program keeps
// at exec.
func setCaps(caps *specs.LinuxCapabilities) error {
	eff, perm, inh := capSet(caps.Effective), capSet(caps.Permitted), capSet(caps.Inheritable)
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(eff), Permitted: uint32(perm), Inheritable: uint32(inh)},
		{Effective: uint32(eff >> 32), Permitted: uint32(perm >> 32), Inheritable: uint32(inh >> 32)},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("set capabilities: %w", err)
	}
	unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
	amb := capSet(caps.Ambient)
	for c := 0; c < 64; c++ {
		if amb&(1<<uint(c)) == 0 {
			continue
		}
		// A capability can be ambient only if it is permitted and
		// inheritable too; `runc spec` asks for ambient ones without
		// inheritable ones. runc warns and runs the process: so do we.
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c), 0, 0); err != nil {
			warnf("ambient capability %s not raised: %v (it must be inheritable and permitted too)", capNames[c], err)
		}
	}
	return nil
}

var rlimitByName = map[string]int{
	"RLIMIT_CPU":        syscall.RLIMIT_CPU,
	"RLIMIT_FSIZE":      syscall.RLIMIT_FSIZE,
	"RLIMIT_DATA":       syscall.RLIMIT_DATA,
	"RLIMIT_STACK":      syscall.RLIMIT_STACK,
	"RLIMIT_CORE":       syscall.RLIMIT_CORE,
	"RLIMIT_RSS":        unix.RLIMIT_RSS,
	"RLIMIT_NPROC":      unix.RLIMIT_NPROC,
	"RLIMIT_NOFILE":     syscall.RLIMIT_NOFILE,
	"RLIMIT_MEMLOCK":    unix.RLIMIT_MEMLOCK,
	"RLIMIT_AS":         syscall.RLIMIT_AS,
	"RLIMIT_LOCKS":      unix.RLIMIT_LOCKS,
	"RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_MSGQUEUE":   unix.RLIMIT_MSGQUEUE,
	"RLIMIT_NICE":       unix.RLIMIT_NICE,
	"RLIMIT_RTPRIO":     unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME":     unix.RLIMIT_RTTIME,
}
