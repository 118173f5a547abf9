package sandbox

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/skiff-oci/skiff/config"
	"github.com/skiff-oci/skiff/internal/proc"
	"github.com/skiff-oci/skiff/internal/tty"
	"github.com/skiff-oci/skiff/sandbox/factory"
	"github.com/skiff-oci/skiff/sandbox/hostcgroup"
	"github.com/skiff-oci/skiff/sandbox/hostfs"
	"github.com/skiff-oci/skiff/sandbox/hostnet"
	"github.com/skiff-oci/skiff/sandbox/oci"
	"github.com/skiff-oci/skiff/sandbox/state"
)

// CreateOptions are the inputs of Create beyond ID and bundle.
type CreateOptions struct {
	Bundle  string
	PIDFile string
	Config  *config.Config
	// ShimArgs re-invoke this binary with the caller's global flags; Create
	// appends "shim" and the ID.
	ShimArgs []string
	// ConsoleSocket receives the master of the process's terminal
	// (process.terminal=true). Without one, a terminal is only possible in
	// the Foreground (run without --detach), on the caller's own stdio.
	ConsoleSocket string
	Foreground    bool
}

// Created is a container whose shim runs.
type Created struct {
	ID   string
	Shim *exec.Cmd
	// RestoreTerminal undoes the raw mode a foreground terminal process
	// put the caller's terminal in; call it once the process has exited.
	RestoreTerminal func()
}

// Create makes a sandbox for container id, boots its VM (in the shim it
// starts) and creates the container, stopped before its first
// instruction. Any failure removes everything it made.
func (r *Runtime) Create(ctx context.Context, id string, o CreateOptions) (_ *Created, err error) {
	b, consoleSocket, err := r.checkCreate(id, o)
	if err != nil {
		return nil, err
	}
	if role, sbID := oci.PodRole(b.Spec); role == oci.RoleContainer {
		return r.createInPod(id, sbID, o, b, consoleSocket)
	}
	restoreTerminal := func() {}
	if b.Spec.Process.Terminal && consoleSocket == "" && tty.IsTerminal(os.Stdin) {
		// The shim relays the caller's own terminal; the guest's terminal
		// does the line discipline.
		if restoreTerminal, err = tty.Raw(os.Stdin); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				restoreTerminal()
			}
		}()
	}
	cfgJSON, err := json.Marshal(o.Config)
	if err != nil {
		return nil, err
	}
	d, lock, err := r.root.Claim(id)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	sd := r.root.Sandbox(id)
	defer func() {
		if err != nil {
			if cerr := destroy(d, sd); cerr != nil {
				slog.Warn("clean up after failed create", "id", id, "error", cerr)
			}
		}
	}()
	rec := &state.Container{ID: id, Bundle: b.Dir, Rootfs: b.Rootfs, Annotations: b.Spec.Annotations, Sandbox: id,
		Created: time.Now().UTC(), Phase: state.PhaseCreating, Poststop: oci.HooksOf(b.Spec).Poststop}
	sb := &state.Sandbox{ID: id, Containers: []string{id}, Config: cfgJSON}
	if err := d.Write(rec); err != nil {
		return nil, err
	}
	if err := sd.Write(sb); err != nil {
		return nil, err
	}
	cmd, err := startShim(sd, sb, id, o.ShimArgs, consoleSocket, hostnet.NetNSPath(b.Spec))
	if err != nil {
		return nil, err
	}
	rec.Phase, rec.PID, rec.PIDStart = state.PhaseCreated, sb.ShimPID, sb.ShimStart
	if err := d.Write(rec); err != nil {
		return nil, err
	}
	if o.PIDFile != "" {
		if err := writePIDFile(o.PIDFile, rec.PID); err != nil {
			return nil, err
		}
	}
	return &Created{ID: id, Shim: cmd, RestoreTerminal: restoreTerminal}, nil
}

// checkCreate refuses, before anything touches disk, what could not be
// created: a bad ID or bundle, a guest image missing, mounts, console,
// network or cgroup the sandbox cannot have.
func (r *Runtime) checkCreate(id string, o CreateOptions) (*oci.Bundle, string, error) {
	if err := state.ValidateID(id); err != nil {
		return nil, "", err
	}
	b, err := oci.LoadBundle(o.Bundle)
	if err != nil {
		return nil, "", err
	}
	if err := factory.CheckGuest(o.Config); err != nil {
		return nil, "", err
	}
	if _, err := hostfs.PlanShares(string(r.root.Sandbox(id)), b, false); err != nil {
		return nil, "", err
	}
	if err := checkConsole(b.Spec.Process.Terminal, o.ConsoleSocket, o.Foreground); err != nil {
		return nil, "", err
	}
	consoleSocket, err := absConsoleSocket(o.ConsoleSocket)
	if err != nil {
		return nil, "", err
	}
	// A pod's container joins its sandbox's network: the namespace its
	// spec names is the host process standing for the sandbox container.
	if role, _ := oci.PodRole(b.Spec); role != oci.RoleContainer {
		if err := hostnet.Check(b.Spec, o.Config.Runtime.NetworkModel); err != nil {
			return nil, "", err
		}
	}
	if _, err := hostcgroup.Path(b.Spec); err != nil {
		return nil, "", err
	}
	return b, consoleSocket, nil
}

// startShim starts the shim of sandbox sd for its container id, records
// it, and waits for its report: the container exists, or why not.
func startShim(sd state.SandboxDir, sb *state.Sandbox, id string, shimArgs []string, consoleSocket, netns string) (*exec.Cmd, error) {
	args := append(append([]string{}, shimArgs[1:]...), "shim")
	if consoleSocket != "" {
		args = append(args, "--console-socket", consoleSocket)
	}
	return startHelper(shimArgs[0], append(args, id), netns, func(pid int) error {
		sb.ShimPID = pid
		sb.ShimStart, _ = proc.StartTime(pid)
		return sd.Write(sb)
	})
}

// readReady reads a helper's one-line report; EOF without one means the
// helper died.
func readReady(r *os.File) (string, error) {
	b, err := bufio.NewReader(r).ReadString(0)
	if err != nil && b == "" {
		return "", errors.New("the shim exited before the container was created (see --log)")
	}
	return strings.TrimSpace(b), nil
}
