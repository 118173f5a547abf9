package agentclient

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// A stand-in hostile guest on the other end of a socketpair, speaking raw
// yamux frames at the host's session.

// socketPair returns the host's end as a net.Conn and the guest's.
func socketPair(t testing.TB) (host, guest net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "pair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
		t.Cleanup(func() { c.Close() })
	}
	return conns[0], conns[1]
}

// readAll has the guest read, and ignore, whatever the host says.
func readAll(guest net.Conn) {
	b := make([]byte, 4096)
	for {
		if _, err := guest.Read(b); err != nil {
			return
		}
	}
}

// hostClient is the host's Client on its end, closed with the test.
func hostClient(t testing.TB, host net.Conn) *Client {
	t.Helper()
	c, err := newClient(host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// frame is one yamux frame header (and payload for data frames).
func frame(typ uint8, flags uint16, stream, length uint32, payload []byte) []byte {
	b := make([]byte, headerSize, headerSize+len(payload))
	b[1] = typ
	binary.BigEndian.PutUint16(b[2:], flags)
	binary.BigEndian.PutUint32(b[4:], stream)
	binary.BigEndian.PutUint32(b[8:], length)
	return append(b, payload...)
}

// A guest that sends pings as fast as it can and reads nothing: the host
// answers a few and keeps neither goroutines nor memory for the rest.
func TestPingFloodStaysBounded(t *testing.T) {
	host, guest := socketPair(t)
	before := runtime.NumGoroutine()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapInuse
	c, err := newClient(host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	const pings = 50000
	var batch []byte
	for i := 0; i < 1000; i++ {
		batch = append(batch, frame(typePing, flagSYN, 0, uint32(i), nil)...)
	}
	for sent := 0; sent < pings; sent += 1000 {
		guest.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := guest.Write(batch); err != nil {
			t.Fatalf("the host stopped reading after %d pings: %v", sent, err)
		}
	}
	time.Sleep(500 * time.Millisecond) // the host parses what is buffered
	g := runtime.NumGoroutine() - before
	runtime.ReadMemStats(&ms)
	heap := int64(ms.HeapInuse) - int64(heapBefore)
	t.Logf("after %d pings: %d more goroutines, %d kB more heap", pings, g, heap>>10)
	if g > 500 {
		t.Errorf("%d goroutines after %d unanswered pings: one per ping", g, pings)
	}
	if heap > 32<<20 {
		t.Errorf("heap grew by %d MB after %d pings", heap>>20, pings)
	}
}

// Streams the guest opens toward the host are refused: the session keeps
// none of them, nor what the guest sends on them.
func TestGuestOpenedStreamsAreDropped(t *testing.T) {
	host, guest := socketPair(t)
	go readAll(guest)
	c := hostClient(t, host)
	data := bytes.Repeat([]byte("g"), 64<<10)
	for id := uint32(2); id < 2+2*300; id += 2 {
		if _, err := guest.Write(frame(typeData, flagSYN, id, uint32(len(data)), data)); err != nil {
			t.Fatal(err)
		}
	}
	// A stream the host did not open, announced by a window update.
	guest.Write(frame(typeWindowUpdate, flagSYN, 1000, 0, nil))
	time.Sleep(300 * time.Millisecond)
	if n := c.sess.NumStreams(); n != 0 {
		t.Errorf("the host session holds %d streams the guest opened", n)
	}
	select {
	case <-c.Done():
		t.Errorf("the session ended: dropping the guest's streams must not break it")
	default:
	}
}

// The ping budget refills with time.
func TestPingBudget(t *testing.T) {
	now := time.Unix(1000, 0)
	g := newGuestConn(nil)
	g.now = func() time.Time { return now }
	in := bytes.Repeat(frame(typePing, flagSYN, 0, 7, nil), 100)
	if out, _ := g.filter(nil, in); len(out) != pingBurst*headerSize || g.DroppedPings != 100-pingBurst {
		t.Fatalf("burst: %d bytes passed, %d dropped", len(out), g.DroppedPings)
	}
	now = now.Add(time.Second / 4)
	if out, _ := g.filter(nil, in); len(out) != pingRate/4*headerSize {
		t.Fatalf("a quarter second later: %d pings passed, want %d", len(out)/headerSize, pingRate/4)
	}
	// Replies to the host's own pings (ACK) are never dropped.
	ack := bytes.Repeat(frame(typePing, 2, 0, 7, nil), 100)
	if out, _ := g.filter(nil, ack); len(out) != len(ack) {
		t.Fatalf("ping replies dropped")
	}
}

// A guest that announces a data frame on a call's stream and sends only
// part of it: the call still ends by its deadline (yamux alone would hold
// the stream's lock, waiting for the rest, past any deadline).
func TestHalfSentFrameDoesNotHangACall(t *testing.T) {
	host, guest := socketPair(t)
	go func() {
		guest.Read(make([]byte, 4096)) // the host's SYN for stream 1 and its request
		guest.Write(frame(typeData, 2, 1, 1000, []byte("only part of it")))
		readAll(guest)
	}()
	c := hostClient(t, host)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := c.Ping(ctx)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Ping succeeded on half a frame")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Ping hung past its 300ms deadline on a half-sent frame")
	}
}

// A data frame larger than any window ends the session before anything
// is allocated for it.
func TestOversizedDataFrameEndsTheSession(t *testing.T) {
	g := newGuestConn(nil)
	if _, err := g.filter(nil, frame(typeData, 0, 1, maxDataFrame+1, nil)); err != errFrameTooLarge {
		t.Fatalf("filter = %v, want errFrameTooLarge", err)
	}
}
