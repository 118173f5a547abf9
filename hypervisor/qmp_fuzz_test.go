package hypervisor

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// FuzzQMPReader: whatever comes back on the QMP socket (QEMU is the
// process that faces the guest, so it is not trusted either), the client
// neither panics nor hangs past its context, and accepts a reply only to
// the command it sent.
func FuzzQMPReader(f *testing.F) {
	greeting := `{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}` + "\n"
	f.Add(greeting + `{"return": {}, "id": "1"}` + "\n" + `{"return": {"status": "running", "running": true}, "id": "2"}` + "\n")
	f.Add(greeting + `{"return": {}, "id": "1"}` + "\n" + `{"event": "STOP", "timestamp": {"seconds": 1}}` + "\n" + `{"error": {"class": "GenericError", "desc": "no"}, "id": "2"}` + "\n")
	f.Add(greeting + `{"return": {}, "id": "1"}` + "\n" + `{"return": {}, "id": "7"}` + "\n")
	f.Add(greeting + `{"return": {}, "id": "1"}` + "\n" + `{"id": "2"}` + "\n")
	f.Add(`{"QMP": null}` + "\n")
	f.Add(greeting + strings.Repeat("x", 4096))
	f.Add("\n\n\n")
	f.Fuzz(func(t *testing.T, reply string) {
		host, vmm := net.Pipe()
		defer host.Close()
		go func() {
			// The stand-in QEMU reads whatever is asked and says reply.
			go func() {
				b := make([]byte, 512)
				for {
					if _, err := vmm.Read(b); err != nil {
						return
					}
				}
			}()
			vmm.Write([]byte(reply))
			vmm.Close()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		c := &QMP{conn: host, r: bufio.NewReaderSize(host, 4096)}
		start := time.Now()
		if err := c.handshake(ctx); err != nil {
			return
		}
		st, err := c.QueryStatus(ctx)
		if err == nil && !strings.Contains(reply, `"2"`) {
			t.Fatalf("status %q accepted without a reply to our command", st)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("QMP client took %v, past its 200ms context", d)
		}
	})
}
