// Package protocol is the single definition of the agent protocol: the
// messages the host (agentclient) and the guest (agent) exchange, and how
// they are framed on the wire. Both sides import it; nothing else defines a
// message.
//
// Transport: one byte stream (a virtio-serial port, or vsock where the host
// has vhost-vsock) carrying a yamux session. The host is the yamux client and
// opens one stream per call; the guest accepts them. Every stream starts with
// one Request frame from the host and one Response frame from the guest.
// For OpenStdio the stream then turns into a raw byte pipe for one stdio
// stream of one process.
//
// A frame is a 4-byte big-endian length followed by that many bytes of JSON.
// Frames larger than MaxFrame are refused by the reader before any
// allocation: the guest is not trusted, and neither is the host from the
// guest's point of view.
//
// It also holds what host and guest must agree on beyond messages: the
// capability names and mount options the agent honours (features.go).
//
// The package must not do I/O beyond framing: no sockets, no processes.
// It must not import any other skiff package: host and guest both import
// it, and it is the only code they share.
package protocol

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/yamux"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// MaxFrame bounds every frame in both directions.
const MaxFrame = 4 << 20

// PortName is the virtio-serial port name the agent looks for.
const PortName = "skiff.agent"

// VsockPort is the vsock port the agent listens on when vsock is used.
const VsockPort = 1024

// ProbeCmdline is put on the guest kernel command line when the host only
// wants to prove that a guest runs under an accelerator: the agent then
// prints ProbeOK on the console and powers off at once.
const (
	ProbeCmdline = "skiff.probe=1"
	ProbeOK      = "SKIFF-PROBE-OK"
)

// ReadyMessage is printed on the guest console by the agent once its
// channel is open; it helps someone reading console.log.
const ReadyMessage = "skiff-agent: ready"

// Method names. Named for what they do.
const (
	MethodPing            = "Ping"
	MethodCreateContainer = "CreateContainer"
	MethodStartContainer  = "StartContainer"
	MethodSignalProcess   = "SignalProcess"
	MethodWaitProcess     = "WaitProcess"
	MethodOpenStdio       = "OpenStdio"
	MethodShutdown        = "Shutdown"
	MethodExecProcess     = "ExecProcess"
	MethodResizeTerminal  = "ResizeTerminal"
	MethodListProcesses   = "ListProcesses"
	MethodPauseContainer  = "PauseContainer"
	MethodResumeContainer = "ResumeContainer"
	// MethodRemoveContainer kills what still runs of a container, waits
	// for it, removes its cgroup and forgets it: its ID may be created
	// again. The shares mounted for it are unmounted.
	MethodRemoveContainer = "RemoveContainer"
)

// Request is the first frame of every stream.
type Request struct {
	Method string          `json:"method"`
	Body   json.RawMessage `json:"body,omitempty"`
}

// Response is the second frame of every stream.
type Response struct {
	// Error is empty on success.
	Error string          `json:"error,omitempty"`
	Body  json.RawMessage `json:"body,omitempty"`
}

// PingRequest has no fields.
type PingRequest struct{}

// PingResponse tells the host which protocol the agent speaks.
type PingResponse struct {
	Version int    `json:"version"`
	Kernel  string `json:"kernel"` // uname -r of the guest
}

// Share is one host directory exported to the guest as a virtio-9p (or
// virtio-fs) device, or a disk's filesystem (a rootfs on a host block
// device). The agent mounts Tag at GuestPath before creating the
// container.
type Share struct {
	// Tag is the device's mount tag, or a disk's serial.
	Tag       string `json:"tag"`
	GuestPath string `json:"guestPath"`
	ReadOnly  bool   `json:"readOnly"`
	// FSType is "9p", "virtiofs", or a disk's filesystem (DiskFS).
	FSType string `json:"fsType"`
}

// DiskFS reports whether fsType is a filesystem a share may have on a
// disk: what the guest's ext4 driver mounts.
func DiskFS(fsType string) bool {
	return fsType == "ext4" || fsType == "ext3" || fsType == "ext2"
}

// CreateContainerRequest creates a container whose process is ready to run
// but stopped before its first instruction (it waits for StartContainer).
//
// Spec is the bundle's config.json with every host path rewritten by the
// host to a guest path: Root.Path points into a share, and each bind mount's
// Source does too. Hooks are removed (they run on the host).
type CreateContainerRequest struct {
	ID     string      `json:"id"`
	Spec   *specs.Spec `json:"spec"`
	Shares []Share     `json:"shares"`
	// Sandbox, when set, is the ID of a container of this guest (a pod's
	// sandbox container) whose network, IPC and UTS namespaces this one
	// joins wherever its spec names a namespace of that type by path: the
	// path is the host's (/proc/<pid>/ns/...) and means nothing in the
	// guest. Its own mount and PID namespaces stay its own.
	Sandbox string `json:"sandbox,omitempty"`
	// Scratch, when set, asks for directories on the sandbox's scratch
	// disk before the container is created: its spec bind-mounts them.
	Scratch *Scratch `json:"scratch,omitempty"`
}

// ScratchDir is where the agent mounts the sandbox's scratch disk (ext4,
// made by the host) in the guest.
const ScratchDir = "/run/skiff/scratch"

// ScratchSerial is the virtio-blk serial of the scratch disk: the agent
// finds the disk by it (/sys/block/vd*/serial), never by probe order.
// virtio-blk serials hold at most 20 bytes.
const ScratchSerial = "skiff-scratch"

// Scratch is what a container needs of the scratch disk: the disk (by
// its serial) mounted at ScratchDir, and Dirs made on it (clean paths
// below ScratchDir), which the container's spec bind-mounts. Removed, a
// container's directories below ScratchDir/c/<id> go with it; the others
// (a pod's shared volumes) stay until the sandbox goes.
type Scratch struct {
	Serial string `json:"serial"`
	// Size is the disk's size in bytes: the agent mounts it once the
	// guest's driver sees that capacity (a clone's guest may first show
	// its template's).
	Size int64    `json:"size,omitempty"`
	Dirs []string `json:"dirs"`
}

// CreateContainerResponse reports the guest PID of the container's process.
type CreateContainerResponse struct {
	PID int `json:"pid"`
}

// StartContainerRequest lets the created container's process run.
type StartContainerRequest struct {
	ID string `json:"id"`
}

// SignalProcessRequest delivers a signal. ExecID empty means the
// container's init process. All sends it to every process of the container.
type SignalProcessRequest struct {
	ID     string `json:"id"`
	ExecID string `json:"execId,omitempty"`
	Signal int    `json:"signal"`
	All    bool   `json:"all,omitempty"`
}

// WaitProcessRequest blocks until the process exited and its stdout and
// stderr have been drained to their streams.
type WaitProcessRequest struct {
	ID     string `json:"id"`
	ExecID string `json:"execId,omitempty"`
}

// WaitProcessResponse carries the status as a shell reports it: the exit
// code, or 128+N when the process died of signal N.
type WaitProcessResponse struct {
	ExitStatus int `json:"exitStatus"`
}

// Stdio stream names.
const (
	Stdin  = "stdin"
	Stdout = "stdout"
	Stderr = "stderr"
)

// OpenStdioRequest attaches this yamux stream to one stdio stream of a
// process. After the Response frame the stream carries raw bytes: host to
// guest for stdin (the host closes its side at EOF), guest to host for
// stdout and stderr (the guest closes at EOF). The host opens these after
// CreateContainer and before StartContainer, so no output is lost.
type OpenStdioRequest struct {
	ID     string `json:"id"`
	ExecID string `json:"execId,omitempty"`
	Stream string `json:"stream"`
}

// ExecProcessRequest starts another process in a created or running
// container: it joins the container's namespaces and cgroup and runs at
// once. ExecID, chosen by the host, names it in OpenStdio, WaitProcess,
// SignalProcess and ResizeTerminal. The process's output waits in its
// pipes (or terminal) until the host attaches, so none is lost.
type ExecProcessRequest struct {
	ID      string         `json:"id"`
	ExecID  string         `json:"execId"`
	Process *specs.Process `json:"process"`
}

// ExecProcessResponse reports the guest PID of the exec'd process.
type ExecProcessResponse struct {
	PID int `json:"pid"`
}

// ResizeTerminalRequest sets the window size of a process's terminal
// (process.terminal=true). A process with a terminal has its output on the
// stdout stream, its input on stdin, and no stderr stream.
type ResizeTerminalRequest struct {
	ID     string `json:"id"`
	ExecID string `json:"execId,omitempty"`
	Rows   uint16 `json:"rows"`
	Cols   uint16 `json:"cols"`
}

// ListProcessesRequest asks for every process of a container, as seen in
// the guest (its cgroup's members).
type ListProcessesRequest struct {
	ID string `json:"id"`
}

// ProcessInfo is one process of a container. PIDs are the guest's.
type ProcessInfo struct {
	PID  int      `json:"pid"`
	PPID int      `json:"ppid"`
	UID  int      `json:"uid"`
	Args []string `json:"args"` // the command line; [comm] for a kernel-less one
}

// ListProcessesResponse lists the processes, by PID.
type ListProcessesResponse struct {
	Processes []ProcessInfo `json:"processes"`
}

// PauseContainerRequest freezes every process of a container (its guest
// cgroup); ResumeContainer thaws them. Both return once the cgroup
// reports the new state.
type PauseContainerRequest struct {
	ID string `json:"id"`
}

// ResumeContainerRequest thaws a paused container.
type ResumeContainerRequest struct {
	ID string `json:"id"`
}

// RemoveContainerRequest names the container to remove.
type RemoveContainerRequest struct {
	ID string `json:"id"`
}

// ShutdownRequest asks the agent to sync filesystems and power the guest off.
type ShutdownRequest struct{}

// Empty is the body of responses that carry nothing.
type Empty struct{}

// ErrFrameTooLarge is returned by ReadFrame for a frame over MaxFrame.
var ErrFrameTooLarge = errors.New("agent protocol: frame too large")

// WriteFrame writes v as one JSON frame.
func WriteFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("agent protocol: encode: %w", err)
	}
	if len(b) > MaxFrame {
		return ErrFrameTooLarge
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err = w.Write(buf)
	return err
}

// ReadFrame reads one frame into v, refusing frames over MaxFrame before
// allocating for them.
func ReadFrame(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxFrame {
		return fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return fmt.Errorf("agent protocol: short frame: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("agent protocol: decode: %w", err)
	}
	return nil
}

// NewRequest builds a Request for method with body encoded as JSON.
func NewRequest(method string, body any) (*Request, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("agent protocol: encode %s: %w", method, err)
	}
	return &Request{Method: method, Body: b}, nil
}

// YamuxConfig is the session configuration both ends use. Keep-alives are
// off: a paused VM must not look like a dead one, and the host bounds every
// call with its own timeout instead.
func YamuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.EnableKeepAlive = false
	c.LogOutput = io.Discard
	c.StreamOpenTimeout = 0
	// A stream may have this much in flight before its sender waits for
	// the receiver's window update: a round trip through the guest is slow
	// under TCG, and yamux's 256 kB default caps a stdout stream's rate.
	c.MaxStreamWindowSize = 4 << 20
	return c
}
