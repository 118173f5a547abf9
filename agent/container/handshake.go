package container

import (
	"bufio"
	"os"
	"strings"
)

// noFD in a child's descriptor list leaves that descriptor closed.
const noFD = ^uintptr(0)

// handshake is the agent's side of a child's setup (a container init or
// an exec'd process): the pipe the child reads its spec from (fdSpec), the
// one it reports on (fdReady), for an init the one it waits on for Start
// (fdStart), and the socket it sends its terminal's master on (fdConsole)
// when it has one. Each is a pair: the agent's end and the child's.
type handshake struct {
	specR, specW   *os.File
	readyR, readyW *os.File
	startR, startW *os.File // nil for an exec'd process
	console, tty   *os.File // console socket: the agent's end, the child's; nil without a terminal
}

// newHandshake makes the pipes of a child's setup: with a start pipe for a
// container init (start), with a console socket when it has a terminal.
func newHandshake(start, terminal bool) (_ *handshake, err error) {
	h := &handshake{}
	defer func() {
		if err != nil {
			h.close()
		}
	}()
	if h.specR, h.specW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if h.readyR, h.readyW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if start {
		if h.startR, h.startW, err = os.Pipe(); err != nil {
			return nil, err
		}
	}
	if terminal {
		if h.console, h.tty, err = consolePair(); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// fds is the child's descriptors: stdio, then fdSpec, fdReady, fdStart
// and fdConsole. The console's slot is left out when the child has no
// terminal unless pad (a list handed to a zygote can hold no gap; one
// with descriptors after fdConsole must keep their numbers).
func (h *handshake) fds(stdin, stdout, stderr *os.File, pad bool) []uintptr {
	fds := []uintptr{stdin.Fd(), stdout.Fd(), stderr.Fd(), h.specR.Fd(), h.readyW.Fd(), fdOf(h.startR)}
	if h.tty != nil || pad {
		fds = append(fds, fdOf(h.tty))
	}
	return fds
}

func fdOf(f *os.File) uintptr {
	if f == nil {
		return noFD
	}
	return f.Fd()
}

// childStarted closes the child's ends once it holds them: EOF on the
// ready pipe then means the child is gone (or, for an exec'd process,
// that it exec'd: the pipe is close-on-exec).
func (h *handshake) childStarted() {
	closeFiles(&h.specR, &h.readyW, &h.startR, &h.tty)
}

// sendSpec writes the child's spec in the background, so that a child
// that dies early cannot block the agent, and closes the pipe.
func (h *handshake) sendSpec(spec []byte) {
	w := h.specW
	h.specW = nil
	go func() {
		w.Write(spec)
		w.Close()
	}()
}

// readReport reads the child's report on its ready pipe: the warnings
// first, then its last line ("ready", "error: ...", or "" at EOF) and the
// error of the read that ended it.
func (h *handshake) readReport() (warnings []string, last string, err error) {
	r := bufio.NewReader(h.readyR)
	line, err := r.ReadString('\n')
	for strings.HasPrefix(line, "warning: ") {
		warnings = append(warnings, strings.TrimSuffix(line, "\n"))
		line, err = r.ReadString('\n')
	}
	return warnings, strings.TrimSuffix(line, "\n"), err
}

// takeStart hands over the agent's end of the start pipe: the handshake
// no longer closes it.
func (h *handshake) takeStart() *os.File {
	w := h.startW
	h.startW = nil
	return w
}

// takeReady hands over the agent's end of the ready pipe, once the
// child's report has been read: its EOF then says the child exec'd (the
// child's end is close-on-exec) or died.
func (h *handshake) takeReady() *os.File {
	r := h.readyR
	h.readyR = nil
	return r
}

// close closes every end still held.
func (h *handshake) close() {
	closeFiles(&h.specR, &h.specW, &h.readyR, &h.readyW, &h.startR, &h.startW, &h.console, &h.tty)
}

func closeFiles(fs ...**os.File) {
	for _, f := range fs {
		if *f != nil {
			(*f).Close()
			*f = nil
		}
	}
}
