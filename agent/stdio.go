package agent

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

type stdioPipe struct {
	f        *os.File // the agent's end
	shared   bool     // f is the terminal master, also the output's: stdin's EOF must not close it
	mu       sync.Mutex
	attached bool
	done     chan struct{} // closed when the copy has finished
}

// newStdio makes the three stdio pipes of a process: the child's ends, to
// pass to it and close once it holds them, and the agent's.
func newStdio() (child [3]*os.File, agent [3]*stdioPipe, err error) {
	for i := range child {
		r, w, perr := os.Pipe()
		if perr != nil {
			err = perr
			break
		}
		if i == 0 {
			child[i], agent[i] = r, &stdioPipe{f: w, done: make(chan struct{})}
		} else {
			child[i], agent[i] = w, &stdioPipe{f: r, done: make(chan struct{})}
		}
	}
	if err != nil {
		for i := range child {
			if child[i] != nil {
				child[i].Close()
				agent[i].f.Close()
			}
		}
	}
	return child, agent, err
}

// startProc starts a process on three fresh stdio pipes: start gets the
// child's ends, closed once it returns; the process it returns gets the
// agent's ends (its terminal's master instead when it has a console), or
// they are closed if it failed.
func startProc(start func(child [3]*os.File) (*proc, error)) (*proc, error) {
	child, stdio, err := newStdio()
	if err != nil {
		return nil, err
	}
	p, err := start(child)
	for _, f := range child {
		f.Close()
	}
	if err != nil {
		for _, s := range stdio {
			s.f.Close()
		}
		return nil, err
	}
	p.stdio = stdio
	if p.console != nil {
		p.useTerminal()
	}
	return p, nil
}

// useTerminal makes a process's stdin and stdout streams its terminal
// master: the pipes it was given were replaced by the terminal's slave in
// the child, and its stderr pipe reads EOF at once.
func (p *proc) useTerminal() {
	for i := 0; i < 2; i++ {
		p.stdio[i].f.Close()
		p.stdio[i].f = p.console
	}
	p.stdio[0].shared = true
}

// waitOutput returns once the output the process wrote before it exited
// has reached the host: its exit status must not overtake it. Streams
// never attached have no reader to wait for.
func (p *proc) waitOutput() {
	for _, s := range p.stdio[1:] {
		s.mu.Lock()
		attached := s.attached
		s.mu.Unlock()
		if attached {
			<-s.done
		}
	}
}

// closeUnattached closes the pipes no stream was ever attached to, once
// the process is forgotten.
func (p *proc) closeUnattached() {
	for _, s := range p.stdio {
		s.mu.Lock()
		if !s.attached && !s.shared {
			s.f.Close()
		}
		s.mu.Unlock()
	}
}

// openStdio attaches the call's stream to one stdio stream of a process:
// after the response it becomes a byte pipe.
func (a *Agent) openStdio(req *protocol.OpenStdioRequest) (func(net.Conn), error) {
	_, pr, err := a.process(req.ID, req.ExecID)
	if err != nil {
		return nil, err
	}
	i, ok := stdioIndex[req.Stream]
	if !ok {
		return nil, fmt.Errorf("unknown stdio stream %q", req.Stream)
	}
	p := pr.stdio[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.attached {
		return nil, fmt.Errorf("container %s: %s already attached", req.ID, req.Stream)
	}
	p.attached = true
	if i == 0 {
		return func(st net.Conn) { p.feed(st, pr.done) }, nil
	}
	return func(st net.Conn) {
		if err := p.drain(st); err != nil {
			a.log.debugf("container %s %s: %v", req.ID, req.Stream, err)
		}
	}, nil
}

// feed copies the host's stream into the program's stdin. The stdin ends
// when the host closes its side, or when the program has exited (exited)
// and nothing can read it anymore.
func (p *stdioPipe) feed(st net.Conn, exited <-chan struct{}) {
	go func() {
		select {
		case <-exited:
			st.Close()
		case <-p.done:
		}
	}()
	io.Copy(p.f, st)
	if !p.shared {
		p.f.Close()
	}
	close(p.done)
}

// drain copies the program's stdout or stderr to the host's stream until
// EOF. Big pipe, big reads: every system call and every frame is
// expensive in an emulated guest. The big buffer comes with the first
// read that fills a small one: most streams carry a few lines or nothing,
// and a megabyte allocated (and zeroed) per stream was a cost of every
// container's start under TCG.
func (p *stdioPipe) drain(st net.Conn) error {
	unix.FcntlInt(p.f.Fd(), unix.F_SETPIPE_SZ, bigRead)
	err := copyGrowing(st, p.f)
	p.f.Close()
	st.Close()
	close(p.done)
	return err
}

// bigRead is the most a drain reads at once, the pipe's size.
const bigRead = 1 << 20

// copyGrowing copies src to dst until EOF, reading into 4 KiB until a
// read fills that, into bigRead from then on.
func copyGrowing(dst io.Writer, src io.Reader) error {
	buf := make([]byte, 4<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
			if n == len(buf) && len(buf) < bigRead {
				buf = make([]byte, bigRead)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

var stdioIndex = map[string]int{protocol.Stdin: 0, protocol.Stdout: 1, protocol.Stderr: 2}
