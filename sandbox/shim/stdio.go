package shim

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// attachStdio connects the shim's own stdio, which are the fds the caller
// of create passed, to the process of c: its terminal, or its three
// streams.
func (s *shim) attachStdio(ctx context.Context, c *container) error {
	if c.terminal {
		return s.attachTerminal(ctx, c)
	}
	// The three streams are opened at once: their round trips overlap.
	var (
		streams [3]net.Conn
		errs    [3]error
		wg      sync.WaitGroup
	)
	for i, which := range []string{protocol.Stdin, protocol.Stdout, protocol.Stderr} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			streams[i], errs[i] = s.vm.Agent.OpenStdio(ctx, c.id(), "", which)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		for _, conn := range streams {
			if conn != nil {
				conn.Close()
			}
		}
		return err
	}
	in, out, errf := streams[0], streams[1], streams[2]
	// Nobody waits for the stdin copy: it may block reading our stdin
	// forever, and it ends with the process anyway.
	go func() {
		io.Copy(in, os.Stdin)
		in.Close()
	}()
	for _, o := range []struct {
		dst io.Writer
		src net.Conn
	}{{os.Stdout, out}, {os.Stderr, errf}} {
		c.outputs.Add(1)
		go func() {
			defer c.outputs.Done()
			io.Copy(o.dst, o.src)
			o.src.Close()
		}()
	}
	return nil
}
