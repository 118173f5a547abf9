package protocol

// MethodDebugConsole starts a shell in the guest itself, for operators
// (`skiff debug-console`, off unless the configuration enables it): /bin/sh
// in the guest's root, its mount, PID and network namespaces, as root,
// outside every container. The agent fixes the command; the host only
// chooses whether it gets a terminal.
//
// The shell is filed under the container ID and ExecID of the request only
// so that OpenStdio, WaitProcess, SignalProcess and ResizeTerminal find it
// as they find an exec'd process; it is not in the container's namespaces
// or cgroup, and a signal to all of the container's processes misses it.
const MethodDebugConsole = "DebugConsole"

// DebugConsoleRequest starts the guest shell. With Terminal the shell gets
// a pty of the guest's own devpts (its output on stdout, no stderr stream),
// sized Rows x Cols when both are set; without, three pipes.
type DebugConsoleRequest struct {
	ID       string `json:"id"`
	ExecID   string `json:"execId"`
	Terminal bool   `json:"terminal,omitempty"`
	Rows     uint16 `json:"rows,omitempty"`
	Cols     uint16 `json:"cols,omitempty"`
	// Term is the TERM the shell gets; the agent accepts a plain name only.
	Term string `json:"term,omitempty"`
}

// DebugConsoleResponse reports the guest PID of the shell.
type DebugConsoleResponse struct {
	PID int `json:"pid"`
}
