package hypervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/skiff-oci/skiff/internal/unixsock"
)

// maxQMPLine bounds one QMP message. QEMU's replies to the commands we use
// are small; a longer line means something is wrong, and must not make us
// allocate without limit.
const maxQMPLine = 1 << 20

// QMP is a client of QEMU's machine protocol on a unix socket. QEMU serves
// one client per QMP socket at a time: hold a QMP only as long as needed.
// Its methods are safe for concurrent use (calls are serialised).
type QMP struct {
	mu   sync.Mutex
	conn net.Conn
	r    *bufio.Reader
	id   uint64
}

// QMPError is an error reply from QEMU.
type QMPError struct {
	Command string
	Class   string `json:"class"`
	Desc    string `json:"desc"`
}

func (e *QMPError) Error() string {
	return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc)
}

// qmpMessage is any line QEMU sends: a greeting, a reply or an event.
type qmpMessage struct {
	Greeting json.RawMessage `json:"QMP"`
	Return   json.RawMessage `json:"return"`
	Error    *QMPError       `json:"error"`
	Event    string          `json:"event"`
	ID       json.RawMessage `json:"id"`
}

// DialQMP connects to the QMP socket at path, retrying while the socket
// does not exist or refuses (QEMU may still be starting) until ctx ends,
// and negotiates capabilities.
func DialQMP(ctx context.Context, path string) (*QMP, error) {
	var conn net.Conn
	for {
		var err error
		conn, err = unixsock.Dial(ctx, path)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("connect qmp %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect qmp %s: %w (last error: %v)", path, ctx.Err(), err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	c := &QMP{conn: conn, r: bufio.NewReaderSize(conn, maxQMPLine)}
	if err := c.handshake(ctx); err != nil {
		conn.Close()
		if cerr := cutBy(ctx, err); cerr != nil {
			err = cerr
		}
		return nil, fmt.Errorf("connect qmp %s: %w", path, err)
	}
	return c, nil
}

func (c *QMP) handshake(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.bind(ctx)()
	m, err := c.read()
	if err != nil {
		return fmt.Errorf("read greeting: %w", err)
	}
	if m.Greeting == nil {
		return errors.New("no QMP greeting: is this a QMP socket?")
	}
	_, err = c.call("qmp_capabilities", nil)
	return err
}

// Close closes the connection.
func (c *QMP) Close() error { return c.conn.Close() }

// Execute runs one QMP command and returns its "return" value. Events that
// arrive meanwhile are skipped. If ctx ends first the call fails; the
// connection should then be closed, since a late reply may be pending.
func (c *QMP) Execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.bind(ctx)()
	r, err := c.call(cmd, args)
	if cerr := cutBy(ctx, err); cerr != nil {
		return nil, fmt.Errorf("qmp %s: %w", cmd, cerr)
	}
	return r, err
}

// cutBy returns ctx's error if ctx is why I/O failed with err, so that
// callers see context.DeadlineExceeded rather than "i/o timeout".
func cutBy(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if _, ok := ctx.Deadline(); ok {
			// The socket deadline is ctx's: ctx is done or about to be.
			<-ctx.Done()
		}
	}
	return ctx.Err()
}

// bind makes blocking I/O on the connection end when ctx does, and returns
// the function that undoes it.
func (c *QMP) bind(ctx context.Context) func() {
	if d, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(d)
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.conn.SetDeadline(time.Unix(1, 0))
		close(fired)
	})
	return func() {
		// If ctx ended just as the call returned, the function may be
		// running: let it finish before clearing the deadline, or it
		// would poison the next call.
		if !stop() {
			<-fired
		}
		c.conn.SetDeadline(time.Time{})
	}
}

func (c *QMP) call(cmd string, args any) (json.RawMessage, error) {
	return c.callWith(cmd, args, func(b []byte) error {
		_, err := c.conn.Write(b)
		return err
	})
}

// callWith is call with the way the request is written: getfd sends a
// descriptor along with its bytes.
func (c *QMP) callWith(cmd string, args any, write func([]byte) error) (json.RawMessage, error) {
	c.id++
	id := strconv.FormatUint(c.id, 10)
	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        string `json:"id"`
	}{cmd, args, id}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: encode: %w", cmd, err)
	}
	if err := write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	// The id skips replies to earlier calls that timed out, besides events.
	want := strconv.Quote(id)
	for {
		m, err := c.read()
		if err != nil {
			return nil, fmt.Errorf("qmp %s: %w", cmd, err)
		}
		if m.Event != "" || string(m.ID) != want {
			continue
		}
		if m.Error != nil {
			m.Error.Command = cmd
			return nil, m.Error
		}
		if m.Return == nil {
			return nil, fmt.Errorf("qmp %s: reply has neither return nor error", cmd)
		}
		return m.Return, nil
	}
}

// read reads one message (one line).
func (c *QMP) read() (*qmpMessage, error) {
	line, err := c.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("message longer than %d bytes", maxQMPLine)
	}
	if err != nil {
		return nil, err
	}
	var m qmpMessage
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, fmt.Errorf("decode message: %w", err)
	}
	return &m, nil
}

// SendFD hands f to QEMU under name (QMP getfd): the descriptor travels
// with the command as SCM_RIGHTS. A migration then names it "fd:NAME",
// which lets QEMU write or read a file without opening it itself: under
// -sandbox spawn=deny it may not run a shell for exec: URIs. QEMU owns its
// copy from then on (a migration closes it); the caller keeps f.
func (c *QMP) SendFD(ctx context.Context, name string, f *os.File) error {
	return c.sendFD(ctx, "getfd", map[string]any{"fdname": name}, f)
}

// AddFD adds f to QEMU's descriptor set id (QMP add-fd): a drive opened
// as /dev/fdset/ID takes a descriptor of the set with the access mode it
// asks for. The caller keeps f.
func (c *QMP) AddFD(ctx context.Context, id int, f *os.File) error {
	return c.sendFD(ctx, "add-fd", map[string]any{"fdset-id": id}, f)
}

// sendFD runs cmd with f sent along as SCM_RIGHTS.
func (c *QMP) sendFD(ctx context.Context, cmd string, args map[string]any, f *os.File) error {
	uc, ok := c.conn.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("qmp %s: the QMP connection is not a unix socket", cmd)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.bind(ctx)()
	_, err := c.callWith(cmd, args, func(b []byte) error {
		_, _, err := uc.WriteMsgUnix(b, syscall.UnixRights(int(f.Fd())), nil)
		return err
	})
	if cerr := cutBy(ctx, err); cerr != nil {
		return fmt.Errorf("qmp %s: %w", cmd, cerr)
	}
	return err
}

// QueryStatus returns the VM's run state: "running", "paused",
// "shutdown", ... as QEMU names it.
func (c *QMP) QueryStatus(ctx context.Context) (string, error) {
	r, err := c.Execute(ctx, "query-status", nil)
	if err != nil {
		return "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(r, &st); err != nil {
		return "", fmt.Errorf("qmp query-status: decode: %w", err)
	}
	return st.Status, nil
}

// Quit makes QEMU exit at once. QEMU may close the connection before its
// reply arrives; that counts as success.
func (c *QMP) Quit(ctx context.Context) error {
	_, err := c.Execute(ctx, "quit", nil)
	if err != nil && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
		return nil
	}
	return err
}

// Stop pauses the VM's vCPUs.
func (c *QMP) Stop(ctx context.Context) error {
	_, err := c.Execute(ctx, "stop", nil)
	return err
}

// Cont resumes a paused VM.
func (c *QMP) Cont(ctx context.Context) error {
	_, err := c.Execute(ctx, "cont", nil)
	return err
}
