// Package shimctl is the single definition of the control protocol between
// the short-lived verbs (the CLI) and a sandbox's shim: the messages, their
// framing, the client the verbs use and the dispatch the shim serves with.
// It is to the shim what agentclient/protocol is to the agent. It must not
// import the shim, the factory or the host plumbing: both ends import it.
//
// Transport: the shim's unix socket in the sandbox's directory. One
// connection per call: one Request frame, one Response frame, framed as the
// agent protocol frames (a 4-byte length, then JSON). Exec and
// DebugConsole keep the connection: the request carries the caller's
// stdin, stdout and stderr as SCM_RIGHTS (none when a console socket gets
// a terminal instead); a first response says the process started, the
// caller may then send Signal frames, and a last response carries the
// exit status.
package shimctl

import (
	"encoding/json"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// Methods, named for what they do. Every one but Shutdown names the
// container it acts on.
const (
	MethodStart        = "Start"
	MethodKill         = "Kill"
	MethodPause        = "Pause"
	MethodResume       = "Resume"
	MethodProcesses    = "Processes"
	MethodUpdate       = "Update"
	MethodStats        = "Stats"
	MethodExec         = "Exec"
	MethodDebugConsole = "DebugConsole"
	// MethodAddContainer creates another container of the sandbox (a
	// pod's) and relays its stdio. It runs as Exec does: the caller is
	// the container's own host process, which passes its stdio, gets a
	// first answer once the container exists, may send Signal frames,
	// and gets the exit status last.
	MethodAddContainer = "AddContainer"
	// MethodRemoveContainer removes a container the sandbox holds, but
	// for the one that made the sandbox (deleting it ends the sandbox).
	MethodRemoveContainer = "RemoveContainer"
	// MethodShutdown stops the sandbox's VM: the answer comes first, the
	// caller then waits for the shim to exit.
	MethodShutdown = "Shutdown"
	// MethodSignal follows an Exec or DebugConsole request on its
	// connection: a signal for the process it started.
	MethodSignal = "Signal"
)

// NetNSEnv names, in a shim's environment, the network namespace its main
// thread enters before anything else runs (commands does it at init), so
// that /proc/PID/ns/net of the host process standing for a container names
// the container's network.
const NetNSEnv = "SKIFF_NETNS"

// Request is the first frame of every connection.
type Request struct {
	Method    string          `json:"method"`
	Container string          `json:"container,omitempty"`
	Body      json.RawMessage `json:"body,omitempty"`
}

// Response is every frame the shim sends back.
type Response struct {
	// Error is empty on success.
	Error string          `json:"error,omitempty"`
	Body  json.RawMessage `json:"body,omitempty"`
}

// KillRequest is the body of Kill.
type KillRequest struct {
	Signal int  `json:"signal"`
	All    bool `json:"all,omitempty"`
}

// UpdateRequest is the body of Update: the container's new limits.
type UpdateRequest struct {
	Resources *specs.LinuxResources `json:"resources"`
}

// ProcessesResponse is the body of Processes' answer.
type ProcessesResponse struct {
	Processes []protocol.ProcessInfo `json:"processes"`
}

// StatsResponse is the body of Stats' answer.
type StatsResponse struct {
	Stats *protocol.Stats `json:"stats"`
}

// ExecRequest is the body of Exec and DebugConsole. For DebugConsole,
// Process only says whether the shell gets a terminal, its size and TERM:
// the agent chooses the command.
type ExecRequest struct {
	ExecID        string         `json:"execId"`
	Process       *specs.Process `json:"process"`
	ConsoleSocket string         `json:"consoleSocket,omitempty"`
}

// AddContainerRequest is the body of AddContainer: the container's
// record is on disk; its terminal, if any, goes to ConsoleSocket.
type AddContainerRequest struct {
	ConsoleSocket string `json:"consoleSocket,omitempty"`
}

// ExecStarted is the body of the first answer to Exec (and AddContainer):
// the process exists.
type ExecStarted struct {
	PID int `json:"pid"`
}

// ExecExited is the body of the last answer to Exec.
type ExecExited struct {
	Status int `json:"status"`
}

// SignalRequest is the body of Signal.
type SignalRequest struct {
	Signal int `json:"signal"`
}
