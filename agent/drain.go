package agent

import (
	"os"
	"strings"
	"time"
)

// drainTCP waits, up to limit, until the guest's TCP sockets have sent what
// their processes wrote. A process that exited leaves its unsent data in
// the kernel's send queue; on a host the kernel goes on sending it, but a
// VM powered off at once would drop it: a container's last bytes would
// never reach their peer.
func drainTCP(limit time.Duration) {
	deadline := time.Now().Add(limit)
	for tcpPending() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// tcpPending reports a socket with bytes in its send queue, or closing
// with its FIN not yet acknowledged.
func tcpPending() bool {
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		lines := strings.Split(string(b), "\n")
		for _, l := range lines[1:] {
			fields := strings.Fields(l)
			if len(fields) < 5 {
				continue
			}
			state, queues := fields[3], fields[4]
			tx, _, _ := strings.Cut(queues, ":")
			if strings.Trim(tx, "0") != "" {
				return true
			}
			switch state {
			case "04", "09", "0B": // FIN_WAIT1, LAST_ACK, CLOSING
				return true
			}
		}
	}
	return false
}
