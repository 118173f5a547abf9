package agentclient

import (
	"cmp"
	"encoding/binary"
	"errors"
	"net"
	"time"
)

// guestConn sits between the agent channel and the yamux session and drops
// the frames through which a hostile guest would make the host spend
// without bound. yamux v0.1.2 answers every ping in a goroutine of its own,
// each blocked for up to its write timeout when the peer does not read: a
// guest sending pings and reading nothing drives the host to a goroutine
// per ping (~1 GiB within seconds). And it keeps every stream the peer
// opens, with up to a receive window of data, until it is accepted.
//
// So, before yamux parses them:
//   - pings the guest asks for are answered at most pingRate a second
//     (pingBurst at once); the others are dropped unanswered. Neither end
//     sends keep-alives (protocol.YamuxConfig): only a hostile guest pings.
//   - streams the guest opens are dropped: the host opens every stream of
//     the protocol, the agent none. yamux discards what then arrives for
//     the unknown stream, so nothing of it is kept.
//   - a data frame reaches yamux only once its whole payload came. yamux
//     reads a frame's payload holding its stream's receive lock, which
//     Stream.Read takes before it looks at its deadline: a guest that
//     announces a frame and sends half of it would hang every call on
//     that stream past its deadline. yamux keeps a frame whole before it
//     delivers any of it anyway; here the frame waits in this buffer
//     instead, bounded by maxDataFrame (larger is a protocol error: no
//     frame may exceed the receive window).
//
// Everything else passes as it came: yamux checks versions, types and
// lengths against its windows itself and ends the session on a violation.
type guestConn struct {
	net.Conn

	buf  []byte // read from the channel
	out  []byte // filtered, not yet returned
	back []byte // out's buffer, reused
	err  error  // the channel's error, returned once out is drained

	hdr   [headerSize]byte // the frame header being collected
	hn    int              // how much of hdr is collected
	left  uint32           // payload bytes of the current frame still to come
	drop  bool             // the current frame's payload is dropped
	frame []byte           // the current data frame, until it is whole

	tokens float64   // pings that may be answered now
	last   time.Time // when tokens was last refilled
	now    func() time.Time

	// DroppedPings and DroppedStreams count what was dropped, for tests
	// and logs.
	DroppedPings, DroppedStreams int
}

// yamux's wire format (its spec.md): a 12-byte header of version, type,
// flags, stream ID and length; only data frames carry a payload, of length
// bytes.
const (
	headerSize       = 12
	typeData         = 0
	typeWindowUpdate = 1
	typePing         = 2
	flagSYN          = 1
)

const (
	pingRate  = 16
	pingBurst = 16
	// maxDataFrame is the largest payload a data frame may have: the
	// largest receive window the host grants (protocol.YamuxConfig).
	maxDataFrame = 4 << 20
)

// errFrameTooLarge ends a session whose guest sent a frame no window allows.
var errFrameTooLarge = errors.New("agent channel: a data frame larger than any receive window")

func newGuestConn(c net.Conn) *guestConn {
	return &guestConn{Conn: c, buf: make([]byte, 32<<10), tokens: pingBurst, now: time.Now}
}

// Read returns the channel's bytes minus the dropped frames.
func (g *guestConn) Read(p []byte) (int, error) {
	for len(g.out) == 0 {
		if g.err != nil {
			return 0, g.err
		}
		n, err := g.Conn.Read(g.buf)
		var ferr error
		g.out, ferr = g.filter(g.back[:0], g.buf[:n])
		g.back = g.out[:0]
		g.err = cmp.Or(ferr, err)
	}
	n := copy(p, g.out)
	g.out = g.out[n:]
	return n, nil
}

// filter appends to out what of in passes, whole frames only. What it
// holds back is at most one header and one data frame of maxDataFrame.
func (g *guestConn) filter(out, in []byte) ([]byte, error) {
	for len(in) > 0 {
		if g.left > 0 {
			n := min(uint32(len(in)), g.left)
			if !g.drop {
				g.frame = append(g.frame, in[:n]...)
			}
			in, g.left = in[n:], g.left-n
			if g.left == 0 && !g.drop {
				out = append(out, g.frame...)
			}
			continue
		}
		n := copy(g.hdr[g.hn:], in)
		in, g.hn = in[n:], g.hn+n
		if g.hn < headerSize {
			break
		}
		g.hn = 0
		typ, flags := g.hdr[1], binary.BigEndian.Uint16(g.hdr[2:4])
		length := binary.BigEndian.Uint32(g.hdr[8:12])
		g.drop = false
		switch {
		case (typ == typeData || typ == typeWindowUpdate) && flags&flagSYN != 0:
			g.drop = true
			g.DroppedStreams++
		case typ == typePing && flags&flagSYN != 0 && !g.allowPing():
			g.drop = true
			g.DroppedPings++
		}
		if typ == typeData && length > 0 {
			if length > maxDataFrame && !g.drop {
				return out, errFrameTooLarge
			}
			g.left = length
			g.frame = append(g.frame[:0], g.hdr[:]...)
			continue
		}
		if !g.drop {
			out = append(out, g.hdr[:]...)
		}
	}
	return out, nil
}

// allowPing takes a token of the ping budget if one is left.
func (g *guestConn) allowPing() bool {
	now := g.now()
	if !g.last.IsZero() {
		g.tokens = min(pingBurst, g.tokens+now.Sub(g.last).Seconds()*pingRate)
	}
	g.last = now
	if g.tokens < 1 {
		return false
	}
	g.tokens--
	return true
}
