package agentclient

import (
	"context"
	"encoding/binary"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// A hostile agent stand-in: the guest is not trusted, so whatever it does
// on the channel, the host side must neither hang without a deadline nor
// allocate without bound.

// fakeAgent serves one yamux session on a unix socket and answers each
// stream with handle.
func fakeAgent(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		sess, err := yamux.Server(conn, protocol.YamuxConfig())
		if err != nil {
			return
		}
		t.Cleanup(func() { sess.Close() })
		for {
			st, err := sess.Accept()
			if err != nil {
				return
			}
			go handle(st)
		}
	}()
	return sock
}

func dial(t *testing.T, sock string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestAgentThatNeverRepliesTimesOut(t *testing.T) {
	sock := fakeAgent(t, func(c net.Conn) {
		var req protocol.Request
		protocol.ReadFrame(c, &req)
		// ... and say nothing, ever.
	})
	c := dial(t, sock)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Ping(ctx)
	if err == nil {
		t.Fatal("Ping succeeded against a silent agent")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Ping took %v to give up, its deadline was 300ms", d)
	}
}

func TestAgentOversizedFrameIsRefusedBeforeAllocation(t *testing.T) {
	sock := fakeAgent(t, func(c net.Conn) {
		var req protocol.Request
		protocol.ReadFrame(c, &req)
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], 0xfffffff0) // ~4 GiB announced
		c.Write(hdr[:])
	})
	c := dial(t, sock)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Ping(ctx)
	if err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("Ping with a 4 GiB frame announced: %v, want a frame-too-large error", err)
	}
}

func TestAgentGarbageIsAnError(t *testing.T) {
	sock := fakeAgent(t, func(c net.Conn) {
		var req protocol.Request
		protocol.ReadFrame(c, &req)
		c.Write([]byte{0, 0, 0, 8, 'g', 'a', 'r', 'b', 'a', 'g', 'e', '!'})
	})
	c := dial(t, sock)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx); err == nil {
		t.Fatal("Ping accepted garbage")
	}
}

func TestAgentWrongVersionIsRefused(t *testing.T) {
	sock := fakeAgent(t, func(c net.Conn) {
		var req protocol.Request
		protocol.ReadFrame(c, &req)
		protocol.WriteFrame(c, protocol.Response{Body: []byte(`{"version":999}`)})
	})
	c := dial(t, sock)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx); err == nil || !strings.Contains(err.Error(), "version") {
		t.Fatalf("Ping of a version-999 agent: %v", err)
	}
}

func TestAgentErrorReplyIsReported(t *testing.T) {
	sock := fakeAgent(t, func(c net.Conn) {
		var req protocol.Request
		protocol.ReadFrame(c, &req)
		protocol.WriteFrame(c, protocol.Response{Error: "container x not found"})
	})
	c := dial(t, sock)
	err := c.StartContainer(context.Background(), "x")
	if err == nil || !IsAgentError(err) || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("StartContainer: %v, want the agent's error", err)
	}
}

func TestWaitProcessEndsWhenTheSessionDies(t *testing.T) {
	sock := fakeAgent(t, func(c net.Conn) {
		var req protocol.Request
		protocol.ReadFrame(c, &req)
	})
	c := dial(t, sock)
	done := make(chan error, 1)
	go func() {
		_, err := c.WaitProcess(context.Background(), "x", "")
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	c.Close() // what a VM that died looks like from here
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("WaitProcess returned a status from a dead session")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitProcess hung after the session died")
	}
}
