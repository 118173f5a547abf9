package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agent/container"
	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// ctr is one container and the processes the agent runs in it.
type ctr struct {
	id    string
	c     *container.Container
	init  *proc
	execs map[string]*proc // by exec ID, guarded by Agent.mu; nil value: being started
}

// proc is one process of a container as the protocol sees it: the init
// process or an exec'd one.
type proc struct {
	pid     int
	stdio   [3]*stdioPipe // stdin, stdout, stderr
	console *os.File      // terminal master, nil without a terminal
	done    <-chan struct{}
	status  func() int
	signal  func(unix.Signal) error
}

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

// useTerminal makes a process's stdin and stdout streams its terminal
// master: the pipes it was given were replaced by the terminal's slave in
// the child, and its stderr pipe reads EOF at once.
func (p *proc) useTerminal(master *os.File) {
	p.console = master
	for i := 0; i < 2; i++ {
		p.stdio[i].f.Close()
		p.stdio[i].f = master
	}
	p.stdio[0].shared = true
}

var stdioIndex = map[string]int{protocol.Stdin: 0, protocol.Stdout: 1, protocol.Stderr: 2}

// validName reports whether s is 1..max characters of [A-Za-z0-9_.+-],
// the first alphanumeric when alnumFirst. A hand-written check rather than
// a regexp: compiling one at package init costs every guest process
// (agent, zygote, container init) its start-up time under TCG.
func validName(s string, max int, alnumFirst bool) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 && alnumFirst || !strings.ContainsRune("_.+-", rune(c))) {
			return false
		}
	}
	return true
}

// validID is the IDs the agent accepts for containers and processes.
func validID(s string) bool { return validName(s, 1024, true) }

// handler answers one call; after, if not nil, runs once the response has
// been written (OpenStdio turns the stream into a byte pipe there).
type handler func(a *Agent, body json.RawMessage) (resp any, after func(net.Conn), err error)

var handlers = map[string]handler{
	protocol.MethodPing:            (*Agent).ping,
	protocol.MethodCreateContainer: (*Agent).createContainer,
	protocol.MethodStartContainer:  (*Agent).startContainer,
	protocol.MethodSignalProcess:   (*Agent).signalProcess,
	protocol.MethodWaitProcess:     (*Agent).waitProcess,
	protocol.MethodOpenStdio:       (*Agent).openStdio,
	protocol.MethodShutdown:        (*Agent).shutdown,
	protocol.MethodExecProcess:     (*Agent).execProcess,
	protocol.MethodResizeTerminal:  (*Agent).resizeTerminal,
	protocol.MethodListProcesses:   (*Agent).listProcesses,
	protocol.MethodPauseContainer:  (*Agent).pauseContainer,
	protocol.MethodResumeContainer: (*Agent).resumeContainer,
}

// handle serves one stream: one Request, one Response, then whatever the
// method does with the stream. A panic fails this call, not the agent.
func (a *Agent) handle(st net.Conn) {
	responded := false
	closeStream := true
	defer func() {
		if r := recover(); r != nil {
			a.log.errorf("panic serving a call: %v\n%s", r, debug.Stack())
			if !responded {
				protocol.WriteFrame(st, protocol.Response{Error: fmt.Sprintf("agent: internal error: %v", r)})
			}
		}
		if closeStream {
			st.Close()
		}
	}()
	var req protocol.Request
	if err := protocol.ReadFrame(st, &req); err != nil {
		a.log.errorf("read request: %v", err)
		if errors.Is(err, protocol.ErrFrameTooLarge) {
			protocol.WriteFrame(st, protocol.Response{Error: err.Error()})
		}
		return
	}
	if a.log.debug {
		body := string(req.Body)
		if len(body) > 160 {
			body = body[:160] + "..."
		}
		a.log.debugf("call %s %s", req.Method, body)
	}
	h, ok := handlers[req.Method]
	var (
		resp  any
		after func(net.Conn)
		err   error
	)
	if !ok {
		err = fmt.Errorf("unknown method %q", req.Method)
	} else {
		resp, after, err = h(a, req.Body)
	}
	var out protocol.Response
	if err != nil {
		out.Error = err.Error()
		a.log.debugf("%s failed: %v", req.Method, err)
	} else if resp != nil {
		b, merr := json.Marshal(resp)
		if merr != nil {
			out.Error = merr.Error()
		}
		out.Body = b
	}
	responded = true
	if werr := protocol.WriteFrame(st, out); werr != nil {
		a.log.errorf("write %s response: %v", req.Method, werr)
		return
	}
	if after != nil && err == nil {
		after(st)
	}
}

func decode(body json.RawMessage, v any) error {
	if len(body) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("bad request body: %w", err)
	}
	return nil
}

func (a *Agent) ping(body json.RawMessage) (any, func(net.Conn), error) {
	var uts unix.Utsname
	unix.Uname(&uts)
	return protocol.PingResponse{Version: protocol.Version, Kernel: unix.ByteSliceToString(uts.Release[:])}, nil, nil
}

// lookup returns a created container, or the error the host shows.
func (a *Agent) lookup(id string) (*ctr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.containers[id]
	if c == nil {
		return nil, fmt.Errorf("container %s not found", id)
	}
	return c, nil
}

func (a *Agent) createContainer(body json.RawMessage) (any, func(net.Conn), error) {
	var req protocol.CreateContainerRequest
	if err := decode(body, &req); err != nil {
		return nil, nil, err
	}
	if !validID(req.ID) {
		return nil, nil, fmt.Errorf("invalid container ID %q", req.ID)
	}
	if err := container.Validate(req.Spec); err != nil {
		return nil, nil, fmt.Errorf("container %s: %w", req.ID, err)
	}
	for _, s := range req.Shares {
		if err := validateShare(s); err != nil {
			return nil, nil, err
		}
	}
	a.mu.Lock()
	if a.stopping {
		a.mu.Unlock()
		return nil, nil, errors.New("agent is shutting down")
	}
	if _, dup := a.containers[req.ID]; dup {
		a.mu.Unlock()
		return nil, nil, fmt.Errorf("container %s already exists", req.ID)
	}
	a.containers[req.ID] = nil // reserve the ID while creating
	a.mu.Unlock()

	c, err := a.create(&req)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		delete(a.containers, req.ID)
		return nil, nil, fmt.Errorf("create container %s: %w", req.ID, err)
	}
	a.containers[req.ID] = c
	return protocol.CreateContainerResponse{PID: c.c.Pid()}, nil, nil
}

func (a *Agent) create(req *protocol.CreateContainerRequest) (_ *ctr, err error) {
	mounted, err := a.mountShares(req.Shares)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			a.unmountShares(mounted)
		}
	}()

	child, stdio, err := newStdio()
	if err != nil {
		return nil, err
	}
	c := &ctr{id: req.ID, execs: map[string]*proc{}}
	z := a.takeZygote()
	c.c, err = container.New(req.ID, req.Spec, a.ownNetwork(), child[0], child[1], child[2], a.reaper, z)
	a.putZygote(z)
	for _, f := range child {
		f.Close()
	}
	if err != nil {
		for _, p := range stdio {
			p.f.Close()
		}
		return nil, err
	}
	cc := c.c
	c.init = &proc{
		pid:    cc.Pid(),
		stdio:  stdio,
		done:   cc.Done(),
		status: cc.ExitStatus,
		signal: func(sig unix.Signal) error { return cc.Signal(sig, false) },
	}
	if m := cc.Console(); m != nil {
		c.init.useTerminal(m)
	}
	for _, w := range c.c.Warnings() {
		a.log.debugf("container %s: %s", req.ID, w)
	}
	a.log.debugf("container %s created, pid %d", req.ID, c.c.Pid())
	return c, nil
}

func validateShare(s protocol.Share) error {
	switch {
	case s.Tag == "" || strings.ContainsAny(s.Tag, ",\x00"):
		return fmt.Errorf("share %q: invalid tag", s.Tag)
	case !filepath.IsAbs(s.GuestPath) || filepath.Clean(s.GuestPath) != s.GuestPath || s.GuestPath == "/":
		return fmt.Errorf("share %s: guest path %q must be absolute, clean and not /", s.Tag, s.GuestPath)
	case s.FSType != "9p" && s.FSType != "virtiofs":
		return fmt.Errorf("share %s: unsupported fsType %q (want 9p or virtiofs)", s.Tag, s.FSType)
	}
	return nil
}

// mountShares mounts the shares not mounted yet and returns those it
// mounted. A guest path already holding the same share is reused.
func (a *Agent) mountShares(shares []protocol.Share) (mounted []protocol.Share, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	defer func() {
		if err != nil {
			a.unmountSharesLocked(mounted)
			mounted = nil
		}
	}()
	for _, s := range shares {
		if have, ok := a.shares[s.GuestPath]; ok {
			if have != s {
				return mounted, fmt.Errorf("share %s: %s already holds share %s", s.Tag, s.GuestPath, have.Tag)
			}
			continue
		}
		if err := mountShare(s); err != nil {
			return mounted, err
		}
		a.shares[s.GuestPath] = s
		mounted = append(mounted, s)
		a.log.debugf("mounted share %s on %s", s.Tag, s.GuestPath)
	}
	return mounted, nil
}

func (a *Agent) unmountShares(shares []protocol.Share) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.unmountSharesLocked(shares)
}

func (a *Agent) unmountSharesLocked(shares []protocol.Share) {
	for _, s := range shares {
		unix.Unmount(s.GuestPath, unix.MNT_DETACH)
		delete(a.shares, s.GuestPath)
	}
}

// 9p cache=mmap: the page cache only backs mmap, so writes reach the host
// at once (a host reading a file the container wrote sees it) while
// binaries can still be executed and mapped, which cache=none cannot do
// for shared writable mappings.
const ninepOptions = "trans=virtio,version=9p2000.L,msize=262144"

func mountShare(s protocol.Share) error {
	if err := os.MkdirAll(s.GuestPath, 0o755); err != nil {
		return fmt.Errorf("share %s: %w", s.Tag, err)
	}
	var flags uintptr
	if s.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	var err error
	switch s.FSType {
	case "9p":
		err = unix.Mount(s.Tag, s.GuestPath, "9p", flags, ninepOptions+",cache=mmap")
		if err == unix.EINVAL {
			err = unix.Mount(s.Tag, s.GuestPath, "9p", flags, ninepOptions)
		}
	case "virtiofs":
		err = unix.Mount(s.Tag, s.GuestPath, "virtiofs", flags, "")
	}
	if err != nil {
		return fmt.Errorf("mount %s share %s on %s: %w", s.FSType, s.Tag, s.GuestPath, err)
	}
	return nil
}

func (a *Agent) startContainer(body json.RawMessage) (any, func(net.Conn), error) {
	var req protocol.StartContainerRequest
	if err := decode(body, &req); err != nil {
		return nil, nil, err
	}
	c, err := a.lookup(req.ID)
	if err != nil {
		return nil, nil, err
	}
	if err := c.c.Start(); err != nil {
		return nil, nil, fmt.Errorf("start container %s: %w", req.ID, err)
	}
	return protocol.Empty{}, nil, nil
}

// process finds a process of a container: its init when execID is empty.
func (a *Agent) process(id, execID string) (*ctr, *proc, error) {
	c, err := a.lookup(id)
	if err != nil {
		return nil, nil, err
	}
	if execID == "" {
		return c, c.init, nil
	}
	a.mu.Lock()
	p := c.execs[execID]
	a.mu.Unlock()
	if p == nil {
		return nil, nil, fmt.Errorf("container %s: process %s not found", id, execID)
	}
	return c, p, nil
}

func (a *Agent) execProcess(body json.RawMessage) (any, func(net.Conn), error) {
	var req protocol.ExecProcessRequest
	if err := decode(body, &req); err != nil {
		return nil, nil, err
	}
	if !validID(req.ExecID) {
		return nil, nil, fmt.Errorf("invalid exec ID %q", req.ExecID)
	}
	c, err := a.lookup(req.ID)
	if err != nil {
		return nil, nil, err
	}
	p, err := a.startExec(c, req.ExecID, func() (*proc, error) { return a.exec(c, req.Process) })
	if err != nil {
		return nil, nil, fmt.Errorf("exec in container %s: %w", req.ID, err)
	}
	a.log.debugf("container %s: exec %s started", req.ID, req.ExecID)
	return protocol.ExecProcessResponse{PID: p.pid}, nil, nil
}

// startExec runs start for a new process execID of c: the ID is reserved
// while it starts (a second one with the same ID is refused), and the
// process registered once it runs.
func (a *Agent) startExec(c *ctr, execID string, start func() (*proc, error)) (*proc, error) {
	a.mu.Lock()
	if _, dup := c.execs[execID]; dup {
		a.mu.Unlock()
		return nil, fmt.Errorf("process %s already exists", execID)
	}
	c.execs[execID] = nil // reserved
	a.mu.Unlock()

	p, err := start()
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		delete(c.execs, execID)
		return nil, err
	}
	c.execs[execID] = p
	return p, nil
}

func (a *Agent) exec(c *ctr, spec *specs.Process) (*proc, error) {
	child, stdio, err := newStdio()
	if err != nil {
		return nil, err
	}
	x, err := c.c.Exec(spec, child[0], child[1], child[2], a.reaper)
	for _, f := range child {
		f.Close()
	}
	if err != nil {
		for _, p := range stdio {
			p.f.Close()
		}
		return nil, err
	}
	p := &proc{pid: x.Pid(), stdio: stdio, done: x.Done(), status: x.ExitStatus, signal: x.Signal}
	if m := x.Console(); m != nil {
		p.useTerminal(m)
	}
	return p, nil
}

func (a *Agent) listProcesses(body json.RawMessage) (any, func(net.Conn), error) {
	var req protocol.ListProcessesRequest
	if err := decode(body, &req); err != nil {
		return nil, nil, err
	}
	c, err := a.lookup(req.ID)
	if err != nil {
		return nil, nil, err
	}
	ps, err := c.c.Processes()
	if err != nil {
		return nil, nil, fmt.Errorf("container %s: %w", req.ID, err)
	}
	out := protocol.ListProcessesResponse{Processes: []protocol.ProcessInfo{}}
	for _, p := range ps {
		out.Processes = append(out.Processes, protocol.ProcessInfo{PID: p.PID, PPID: p.PPID, UID: p.UID, Args: p.Args})
	}
	return out, nil, nil
}

func (a *Agent) pauseContainer(body json.RawMessage) (any, func(net.Conn), error) {
	var req protocol.PauseContainerRequest
	if err := decode(body, &req); err != nil {
		return nil, nil, err
	}
	return a.freeze(req.ID, true)
}

func (a *Agent) resumeContainer(body json.RawMessage) (any, func(net.Conn), error) {
	var req protocol.ResumeContainerRequest
	if err := decode(body, &req); err != nil {
		return nil, nil, err
	}
	return a.freeze(req.ID, false)
}

func (a *Agent) freeze(id string, frozen bool) (any, func(net.Conn), error) {
	c, err := a.lookup(id)
	if err != nil {
		return nil, nil, err
	}
	if err := c.c.Freeze(frozen); err != nil {
		return nil, nil, fmt.Errorf("container %s: %w", id, err)
	}
	return protocol.Empty{}, nil, nil
}

func (a *Agent) resizeTerminal(body json.RawMessage) (any, func(net.Conn), error) {
	var req protocol.ResizeTerminalRequest
	if err := decode(body, &req); err != nil {
		return nil, nil, err
	}
	_, p, err := a.process(req.ID, req.ExecID)
	if err != nil {
		return nil, nil, err
	}
	if p.console == nil {
		return nil, nil, fmt.Errorf("container %s: the process has no terminal", req.ID)
	}
	if err := container.Resize(p.console, req.Rows, req.Cols); err != nil {
		return nil, nil, fmt.Errorf("container %s: resize terminal: %w", req.ID, err)
	}
	return protocol.Empty{}, nil, nil
}

func (a *Agent) signalProcess(body json.RawMessage) (any, func(net.Conn), error) {
	var req protocol.SignalProcessRequest
	if err := decode(body, &req); err != nil {
		return nil, nil, err
	}
	c, p, err := a.process(req.ID, req.ExecID)
	if err != nil {
		return nil, nil, err
	}
	if req.Signal <= 0 || req.Signal > 64 {
		return nil, nil, fmt.Errorf("invalid signal %d", req.Signal)
	}
	if req.All {
		err = c.c.Signal(unix.Signal(req.Signal), true)
	} else {
		err = p.signal(unix.Signal(req.Signal))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("container %s: %w", req.ID, err)
	}
	return protocol.Empty{}, nil, nil
}

func (a *Agent) waitProcess(body json.RawMessage) (any, func(net.Conn), error) {
	var req protocol.WaitProcessRequest
	if err := decode(body, &req); err != nil {
		return nil, nil, err
	}
	c, pr, err := a.process(req.ID, req.ExecID)
	if err != nil {
		return nil, nil, err
	}
	status := pr.status()
	// Output written just before the exit is still in the pipes: the
	// status must not overtake it. Streams never attached have no reader
	// to wait for.
	for _, p := range pr.stdio[1:] {
		p.mu.Lock()
		attached := p.attached
		p.mu.Unlock()
		if attached {
			<-p.done
		}
	}
	if req.ExecID != "" {
		// An exec'd process is waited for once; then it is forgotten.
		a.mu.Lock()
		if c.execs[req.ExecID] == pr {
			delete(c.execs, req.ExecID)
		}
		a.mu.Unlock()
		for _, p := range pr.stdio {
			p.mu.Lock()
			if !p.attached && !p.shared {
				p.f.Close()
			}
			p.mu.Unlock()
		}
	}
	return protocol.WaitProcessResponse{ExitStatus: status}, nil, nil
}

func (a *Agent) openStdio(body json.RawMessage) (any, func(net.Conn), error) {
	var req protocol.OpenStdioRequest
	if err := decode(body, &req); err != nil {
		return nil, nil, err
	}
	_, pr, err := a.process(req.ID, req.ExecID)
	if err != nil {
		return nil, nil, err
	}
	i, ok := stdioIndex[req.Stream]
	if !ok {
		return nil, nil, fmt.Errorf("unknown stdio stream %q", req.Stream)
	}
	p := pr.stdio[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.attached {
		return nil, nil, fmt.Errorf("container %s: %s already attached", req.ID, req.Stream)
	}
	p.attached = true
	if i == 0 {
		return protocol.Empty{}, func(st net.Conn) {
			// The program's stdin ends when the host closes its side, or
			// when the program has exited and nothing can read it anymore.
			go func() {
				select {
				case <-pr.done:
					st.Close()
				case <-p.done:
				}
			}()
			io.Copy(p.f, st)
			if !p.shared {
				p.f.Close()
			}
			close(p.done)
		}, nil
	}
	return protocol.Empty{}, func(st net.Conn) {
		// Big pipe, big reads: every system call and every frame is
		// expensive in an emulated guest.
		unix.FcntlInt(p.f.Fd(), unix.F_SETPIPE_SZ, 1<<20)
		buf := make([]byte, 1<<20)
		if _, err := io.CopyBuffer(st, struct{ io.Reader }{p.f}, buf); err != nil {
			a.log.debugf("container %s %s: %v", req.ID, req.Stream, err)
		}
		p.f.Close()
		st.Close()
		close(p.done)
	}, nil
}

func (a *Agent) shutdown(body json.RawMessage) (any, func(net.Conn), error) {
	a.mu.Lock()
	a.stopping = true
	var all []*ctr
	for _, c := range a.containers {
		if c != nil {
			all = append(all, c)
		}
	}
	a.mu.Unlock()
	for _, c := range all {
		c.c.Signal(unix.SIGKILL, true)
		c.c.Signal(unix.SIGKILL, false)
	}
	timeout := time.After(2 * time.Second)
	for _, c := range all {
		select {
		case <-c.c.Done():
		case <-timeout:
		}
	}
	drainTCP(2 * time.Second)
	unix.Sync()
	a.mu.Lock()
	for path := range a.shares {
		if err := unix.Unmount(path, 0); err != nil {
			unix.Unmount(path, unix.MNT_DETACH)
		}
	}
	a.mu.Unlock()
	return protocol.Empty{}, func(st net.Conn) {
		// Give the response a moment to reach the host (it closes its end
		// when it has read it), then power off.
		st.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		io.Copy(io.Discard, st)
		powerOff()
	}, nil
}
