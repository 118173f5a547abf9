package sandbox

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// The control protocol between short-lived verbs and the shim: one
// request and one response frame per connection on the shim's socket in the
// state directory, framed like the agent protocol.

const (
	ctlStart    = "start"
	ctlKill     = "kill"
	ctlShutdown = "shutdown"
	// ctlExec starts a process in the container. The request carries the
	// caller's stdin, stdout and stderr as SCM_RIGHTS (none when a console
	// socket receives a terminal instead); the shim relays them. The
	// connection then stays open: a first response reports the start, the
	// caller may send ctlSignal requests for the process, and a last
	// response carries its exit status.
	ctlExec   = "exec"
	ctlSignal = "signal"

	ctlPause  = "pause"
	ctlResume = "resume"
	ctlPs     = "ps"

	// ctlUpdate and ctlStats: the container's guest cgroup (update.go).
	ctlUpdate = "update"
	ctlStats  = "stats"
)

type ctlRequest struct {
	Op     string `json:"op"`
	Signal int    `json:"signal,omitempty"`
	All    bool   `json:"all,omitempty"`

	// ctlExec only.
	ExecID        string         `json:"execId,omitempty"`
	Process       *specs.Process `json:"process,omitempty"`
	ConsoleSocket string         `json:"consoleSocket,omitempty"`

	// ctlUpdate only.
	Resources *specs.LinuxResources `json:"resources,omitempty"`
}

type ctlResponse struct {
	Error string `json:"error,omitempty"`

	// ctlExec only: the guest PID once started, then the exit status.
	PID        int  `json:"pid,omitempty"`
	Exited     bool `json:"exited,omitempty"`
	ExitStatus int  `json:"exitStatus,omitempty"`

	// ctlPs only.
	Processes []protocol.ProcessInfo `json:"processes,omitempty"`

	// ctlStats only.
	Stats *protocol.Stats `json:"stats,omitempty"`
}

// fdReader reads a unix connection and keeps the descriptors that arrive
// with the bytes (SCM_RIGHTS), so that a frame and its files are read
// together.
type fdReader struct {
	conn *net.UnixConn
	fds  []*os.File
}

func (r *fdReader) Read(p []byte) (int, error) {
	oob := make([]byte, unix.CmsgSpace(4*8))
	n, oobn, _, _, err := r.conn.ReadMsgUnix(p, oob)
	if oobn > 0 {
		if msgs, perr := unix.ParseSocketControlMessage(oob[:oobn]); perr == nil {
			for _, m := range msgs {
				fds, _ := unix.ParseUnixRights(&m)
				for _, fd := range fds {
					r.fds = append(r.fds, os.NewFile(uintptr(fd), fmt.Sprintf("passed-fd-%d", len(r.fds))))
				}
			}
		}
	}
	if n == 0 && err == nil {
		err = io.EOF
	}
	return n, err
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// ctlTimeout bounds a verb's wait for the shim; a start or kill goes to the
// guest and back, which is slow under TCG but never this slow.
const ctlTimeout = 60 * time.Second

// shimCall sends one request to the shim of d.
func shimCall(ctx context.Context, d Dir, req ctlRequest) error {
	_, err := shimQuery(ctx, d, req)
	return err
}

// shimQuery sends one request to the shim of d and returns its response.
func shimQuery(ctx context.Context, d Dir, req ctlRequest) (*ctlResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, ctlTimeout)
	defer cancel()
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "unix", d.ShimSocket())
	if err != nil {
		return nil, fmt.Errorf("reach the container's shim: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if err := protocol.WriteFrame(conn, req); err != nil {
		return nil, fmt.Errorf("send %s to shim: %w", req.Op, err)
	}
	var rsp ctlResponse
	if err := protocol.ReadFrame(conn, &rsp); err != nil {
		return nil, fmt.Errorf("%s: no answer from shim: %w", req.Op, err)
	}
	if rsp.Error != "" {
		return nil, fmt.Errorf("%s", rsp.Error)
	}
	return &rsp, nil
}
