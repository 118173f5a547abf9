package agentclient

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// Seeds: what a hostile guest would try on the agent channel.
func hostileSeeds(f *testing.F) {
	f.Add(frame(typePing, flagSYN, 0, 1, nil))
	f.Add(bytes.Repeat(frame(typePing, flagSYN, 0, 1, nil), 40))
	f.Add(frame(typeData, flagSYN, 2, 5, []byte("hello")))
	f.Add(frame(typeData, 0, 1, 0xffffffff, []byte("huge")))            // a 4 GiB frame announced
	f.Add(frame(typeWindowUpdate, 2, 1, 0xffffffff, nil))               // an ACK with a huge window
	f.Add(frame(typeData, 2, 1, 8, []byte{0, 0, 0, 4, '{', '}', 0, 0})) // a reply frame cut short
	f.Add(frame(3, 0, 0, 2, nil))                                       // go away
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})                   // another yamux version
	f.Add([]byte("garbage, not yamux at all"))
}

// FuzzGuestConnFilter: the filter's verdict does not depend on how the
// guest's bytes are split into reads, and it never passes more than came.
func FuzzGuestConnFilter(f *testing.F) {
	hostileSeeds(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		now := time.Unix(1, 0)
		clock := func() time.Time { return now }
		whole := newGuestConn(nil)
		whole.now = clock
		want, werr := whole.filter(nil, in)
		if len(want) > len(in) {
			t.Fatalf("passed %d bytes of %d", len(want), len(in))
		}
		split := newGuestConn(nil)
		split.now = clock
		var got []byte
		var gerr error
		for rest, n := in, 1; len(rest) > 0 && gerr == nil; n = n%13 + 1 {
			k := min(n, len(rest))
			got, gerr = split.filter(got, rest[:k])
			rest = rest[k:]
		}
		if (werr == nil) != (gerr == nil) || !bytes.Equal(got, want) {
			t.Fatalf("filtered in pieces: %x\nat once: %x", got, want)
		}
	})
}

// FuzzClientAgainstHostilePeer: whatever the guest's end of the channel
// says, a call returns (an error, most likely) by its deadline, and nothing
// panics.
func FuzzClientAgainstHostilePeer(f *testing.F) {
	hostileSeeds(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		host, guest := socketPair(t)
		go func() {
			guest.Write(in)
			readAll(guest)
		}()
		c := hostClient(t, host)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		c.Ping(ctx)
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Ping took %v past its 50ms deadline", d)
		}
	})
}
