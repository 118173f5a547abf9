package agent

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// maxEntropy bounds what the host may feed the pool in one call.
const maxEntropy = 512

// reseed sets the guest clock to the host's and mixes fresh entropy into
// the kernel's pool, crediting it, then forces the CRNG to reseed so that
// nothing drawn from now on depends on the template's random state.
func (a *Agent) reseed(req *protocol.ReseedRequest) error {
	if len(req.Entropy) == 0 || len(req.Entropy) > maxEntropy {
		return fmt.Errorf("entropy of %d bytes: want 1 to %d", len(req.Entropy), maxEntropy)
	}
	ts := unix.NsecToTimespec(req.UnixNano)
	if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
		return fmt.Errorf("set clock: %w", err)
	}
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open /dev/urandom: %w", err)
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	info := make([]byte, 8+len(req.Entropy))
	*(*int32)(unsafe.Pointer(&info[0])) = int32(len(req.Entropy) * 8)
	*(*int32)(unsafe.Pointer(&info[4])) = int32(len(req.Entropy))
	copy(info[8:], req.Entropy)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&info[0]))); e != 0 {
		return fmt.Errorf("add entropy: %w", e)
	}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDRESEEDCRNG, 0); e != 0 {
		return fmt.Errorf("reseed: %w", e)
	}
	a.log.debugf("clock set and entropy pool reseeded")
	return nil
}
