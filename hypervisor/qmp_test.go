package hypervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeQMP serves one QMP client the way QEMU does, with a few commands
// that misbehave on purpose. It starts listening only after delay, to
// exercise DialQMP's retry. The returned channel yields the server's error.
func fakeQMP(t *testing.T, delay time.Duration) (string, <-chan error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qmp.sock")
	errc := make(chan error, 1)
	go func() {
		time.Sleep(delay)
		l, err := net.Listen("unix", path)
		if err != nil {
			errc <- err
			return
		}
		defer l.Close()
		c, err := l.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		errc <- serveQMP(c)
	}()
	return path, errc
}

func serveQMP(c net.Conn) error {
	send := func(s string) error { _, err := fmt.Fprintln(c, s); return err }
	if err := send(`{"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": ["oob"]}}`); err != nil {
		return err
	}
	sc := bufio.NewScanner(c)
	negotiated := false
	for sc.Scan() {
		var req struct {
			Execute string          `json:"execute"`
			ID      json.RawMessage `json:"id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			return err
		}
		reply := func(body string) error {
			return send(fmt.Sprintf(`{%s, "id": %s}`, body, req.ID))
		}
		if !negotiated && req.Execute != "qmp_capabilities" {
			return fmt.Errorf("%s before qmp_capabilities", req.Execute)
		}
		var err error
		switch req.Execute {
		case "qmp_capabilities":
			negotiated = true
			err = reply(`"return": {}`)
		case "query-status":
			// An event and a stale reply come first; the client skips both.
			send(`{"event": "RESUME", "timestamp": {"seconds": 1, "microseconds": 2}}`)
			send(`{"return": {"status": "paused"}, "id": "stale"}`)
			err = reply(`"return": {"status": "running", "singlestep": false, "running": true}`)
		case "stop":
			err = reply(`"error": {"class": "GenericError", "desc": "cannot stop now"}`)
		case "huge":
			err = send(`{"return": "` + strings.Repeat("x", maxQMPLine) + `"}`)
		case "hang":
			// never answer
		case "quit":
			reply(`"return": {}`)
			return nil
		default:
			err = reply(`"error": {"class": "CommandNotFound", "desc": "The command ` + req.Execute + ` has not been found"}`)
		}
		if err != nil {
			return err
		}
	}
	return sc.Err()
}

func TestQMPClient(t *testing.T) {
	c, errc, ctx := dialFakeQMP(t, 100*time.Millisecond)

	st, err := c.QueryStatus(ctx)
	if err != nil || st != "running" {
		t.Fatalf("QueryStatus = %q, %v; want running", st, err)
	}

	var qe *QMPError
	if err := c.Stop(ctx); !errors.As(err, &qe) || qe.Class != "GenericError" || !strings.Contains(err.Error(), "cannot stop now") {
		t.Fatalf("Stop error = %v, want the server's GenericError", err)
	}

	hctx, hcancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err = c.Execute(hctx, "hang", nil)
	hcancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hanging command: error = %v, want deadline exceeded", err)
	}
	// The connection stays usable after a timed-out call.
	if st, err := c.QueryStatus(ctx); err != nil || st != "running" {
		t.Fatalf("QueryStatus after timeout = %q, %v", st, err)
	}

	if err := c.Quit(ctx); err != nil {
		t.Fatalf("Quit: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("fake server: %v", err)
	}
}

func TestQMPLineLimit(t *testing.T) {
	c, _, ctx := dialFakeQMP(t, 0)
	if _, err := c.Execute(ctx, "huge", nil); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("huge reply: error = %v, want a size error", err)
	}
}

func TestDialQMPGivesUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := DialQMP(ctx, filepath.Join(t.TempDir(), "absent.sock"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("gave up after %v", d)
	}
}

// dialFakeQMP connects a client to a fake QMP server answering after delay.
func dialFakeQMP(t *testing.T, delay time.Duration) (*QMP, <-chan error, context.Context) {
	t.Helper()
	path, errc := fakeQMP(t, delay)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	c, err := DialQMP(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, errc, ctx
}
