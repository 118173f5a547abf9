package sandbox

import (
	"context"
	"fmt"
	"os"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/skiff-oci/skiff/internal/tty"
	"github.com/skiff-oci/skiff/sandbox/oci"
	"github.com/skiff-oci/skiff/sandbox/shimctl"
)

// DebugConsoleOptions are the inputs of DebugConsole.
type DebugConsoleOptions struct {
	// Enabled is runtime.debug_console of the configuration in force;
	// ConfigSource names that configuration's file ("" for defaults).
	Enabled      bool
	ConfigSource string
	// Stdin, Stdout and Stderr are relayed to the shell; with a terminal
	// on stdin the shell gets a pty in the guest.
	Stdin, Stdout, Stderr *os.File
	// Signals received meanwhile are passed on to the shell.
	Signals <-chan os.Signal
}

// DebugConsole runs a shell in the VM of container id, in the guest's own
// root and namespaces (not the container's), for operators, and returns its
// exit status. It is refused unless the configuration enables it: the
// shell is root in the guest, beside every container of the sandbox.
func (r *Runtime) DebugConsole(ctx context.Context, id string, o DebugConsoleOptions) (int, error) {
	if !o.Enabled {
		where := "/etc/skiff/config.toml or the file given with --config"
		if o.ConfigSource != "" {
			where = o.ConfigSource
		}
		return 0, fmt.Errorf("debug-console is disabled: it gives a root shell in the VM, outside the container; to allow it set debug_console = true in the [runtime] section of %s", where)
	}
	c, err := r.load(id)
	if err != nil {
		return 0, err
	}
	status := c.Status()
	c.done()
	if status != oci.StatusCreated && status != oci.StatusRunning && status != oci.StatusPaused {
		return 0, fmt.Errorf("cannot open a debug console in container %s: it is %s (its VM runs only while the container is created, running or paused)", id, status)
	}
	execID, err := newExecID()
	if err != nil {
		return 0, err
	}
	files := []*os.File{o.Stdin, o.Stdout, o.Stderr}
	for i, f := range files {
		if f == nil {
			return 0, fmt.Errorf("debug-console: stdio descriptor %d is missing", i)
		}
	}
	p := &specs.Process{Args: []string{"/bin/sh"}, Terminal: tty.IsTerminal(o.Stdin)}
	if t := os.Getenv("TERM"); t != "" {
		p.Env = []string{"TERM=" + t}
	}
	if p.Terminal {
		p.ConsoleSize = tty.Size(o.Stdin)
		restore, err := tty.Raw(o.Stdin)
		if err != nil {
			return 0, err
		}
		defer restore()
	}
	req := execRequest{Method: shimctl.MethodDebugConsole, ExecRequest: shimctl.ExecRequest{ExecID: "debug-" + strings.TrimPrefix(execID, "exec-"), Process: p}}
	return attachExec(ctx, c.sandbox.shim(), id, req, files, o.Signals, func(int) error { return nil })
}
