// Package sandbox is skiff's lifecycle engine: it loads and validates
// bundles, keeps the on-disk state, runs the shim that owns each VM, and
// tears everything down. Commands call one function of this package per
// verb; this package never prints for the user.
package sandbox

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/skiff-oci/skiff/config"
	"github.com/skiff-oci/skiff/hypervisor"
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

// Create boots the sandbox and creates the container, stopped before its
// first instruction. Any failure removes everything it made.
func (s *Store) Create(ctx context.Context, id string, o CreateOptions) (_ *Created, err error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	b, err := LoadBundle(o.Bundle)
	if err != nil {
		return nil, err
	}
	if err := checkGuest(o.Config); err != nil {
		return nil, err
	}
	if _, err := planShares(s.Dir(id), b); err != nil {
		return nil, err
	}
	if err := checkConsole(b.Spec.Process.Terminal, o.ConsoleSocket, o.Foreground); err != nil {
		return nil, err
	}
	consoleSocket, err := absConsoleSocket(o.ConsoleSocket)
	if err != nil {
		return nil, err
	}
	restoreTerminal := func() {}
	if b.Spec.Process.Terminal && consoleSocket == "" && isTerminal(os.Stdin) {
		// The shim relays the caller's own terminal; the guest's terminal
		// does the line discipline.
		if restoreTerminal, err = rawTerminal(os.Stdin); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				restoreTerminal()
			}
		}()
	}
	if err := checkNetwork(b.Spec, o.Config.Runtime.NetworkModel); err != nil {
		return nil, err
	}
	if _, err := hostCgroupPath(b.Spec); err != nil {
		return nil, err
	}
	cfgJSON, err := json.Marshal(o.Config)
	if err != nil {
		return nil, err
	}

	d, lock, err := s.create(id)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	defer func() {
		if err != nil {
			if cerr := destroy(d, nil); cerr != nil {
				slog.Warn("clean up after failed create", "id", id, "error", cerr)
			}
		}
	}()

	st := &State{
		ID:          id,
		Bundle:      b.Dir,
		Rootfs:      b.Rootfs,
		Annotations: b.Spec.Annotations,
		Created:     time.Now().UTC(),
		Phase:       PhaseCreating,
		Config:      cfgJSON,
		Poststop:    hooksOf(b.Spec).Poststop,
	}
	if err := d.write(st); err != nil {
		return nil, err
	}

	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer readyR.Close()
	args := append(append([]string{}, o.ShimArgs[1:]...), "shim")
	if consoleSocket != "" {
		args = append(args, "--console-socket", consoleSocket)
	}
	args = append(args, id)
	cmd := exec.Command(o.ShimArgs[0], args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{readyW}
	// Its own session: the caller's terminal signals must not reach it, and
	// it must outlive create.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		readyW.Close()
		return nil, fmt.Errorf("start shim: %w", err)
	}
	readyW.Close()
	st.ShimPID = cmd.Process.Pid
	st.ShimStart, _ = procStartTime(st.ShimPID)
	// Recorded before waiting, so that delete --force finds the shim if
	// this process dies now.
	if err := d.write(st); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, err
	}

	msg, rerr := readReady(readyR)
	if rerr != nil || msg != "ok" {
		cmd.Process.Kill()
		cmd.Wait()
		if rerr != nil {
			return nil, fmt.Errorf("shim: %w", rerr)
		}
		return nil, errors.New(strings.TrimPrefix(msg, "error: "))
	}

	st.Phase = PhaseCreated
	if err := d.write(st); err != nil {
		return nil, err
	}
	if o.PIDFile != "" {
		if err := writePIDFile(o.PIDFile, st.ShimPID); err != nil {
			return nil, err
		}
	}
	return &Created{ID: id, Shim: cmd, RestoreTerminal: restoreTerminal}, nil
}

// readReady reads the shim's one-line report; EOF without one means the
// shim died.
func readReady(r *os.File) (string, error) {
	b, err := bufio.NewReader(r).ReadString(0)
	if err != nil && b == "" {
		return "", errors.New("the shim exited before the container was created (see --log)")
	}
	return strings.TrimSpace(b), nil
}

// checkGuest refuses a configuration whose VM could not start, before
// anything touches disk.
func checkGuest(c *config.Config) error {
	h := c.Hypervisor
	for _, f := range []struct{ what, path string }{
		{"hypervisor.path (QEMU)", h.Path},
		{"hypervisor.kernel", h.Kernel},
		{"hypervisor.initrd", h.Initrd},
	} {
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%s %s does not exist: build the guest image with make, install QEMU, or fix the configuration", f.what, f.path)
		}
	}
	return nil
}

// writePIDFile writes the PID atomically, as runc does.
func writePIDFile(path string, pid int) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(abs), "."+filepath.Base(abs)+".tmp")
	if err := os.WriteFile(tmp, []byte(fmt.Sprint(pid)), 0o644); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	if err := os.Rename(tmp, abs); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write pid file: %w", err)
	}
	return nil
}

// open locks an existing container and reads its state.
func (s *Store) open(id string) (Dir, *Lock, *State, error) {
	if err := ValidateID(id); err != nil {
		return "", nil, nil, err
	}
	d := s.Dir(id)
	l, err := d.lock()
	if err != nil {
		if errors.Is(err, ErrNotExist) {
			return "", nil, nil, fmt.Errorf("container %q does not exist", id)
		}
		return d, nil, nil, fmt.Errorf("container %s: %w", id, err)
	}
	st, err := d.read()
	if err != nil {
		l.Unlock()
		return "", nil, nil, err
	}
	return d, l, st, nil
}

// Start lets a created container's process run.
func (s *Store) Start(ctx context.Context, id string) error {
	d, l, st, err := s.open(id)
	if err != nil {
		return err
	}
	defer l.Unlock()
	if err := canStart(id, d.status(st)); err != nil {
		return err
	}
	if err := shimCall(ctx, d, ctlRequest{Op: ctlStart}); err != nil {
		return fmt.Errorf("start container %s: %w", id, err)
	}
	st.Phase = PhaseStarted
	return d.write(st)
}

// Kill sends sig to the container's process, or to all its processes.
func (s *Store) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	d, l, st, err := s.open(id)
	if err != nil {
		return err
	}
	defer l.Unlock()
	if err := canKill(id, d.status(st)); err != nil {
		return err
	}
	if err := shimCall(ctx, d, ctlRequest{Op: ctlKill, Signal: int(sig), All: all}); err != nil {
		return fmt.Errorf("kill container %s: %w", id, err)
	}
	return nil
}

// Delete removes a container: its VM, shim, host mounts and state. With
// force it also takes over from a verb that holds the lock too long (a
// create hung or killed half-way): it kills what that verb started.
func (s *Store) Delete(ctx context.Context, id string, force bool) error {
	d, l, st, err := s.open(id)
	if errors.Is(err, errLocked) && force {
		slog.Warn("container is locked by another command; deleting anyway", "id", id)
		st, _ = d.read()
		return destroy(d, st)
	}
	if err != nil {
		return err
	}
	defer l.Unlock()
	if err := canDelete(id, d.status(st), force); err != nil {
		return err
	}
	return destroy(d, st)
}

// destroy ends whatever still runs of a container and removes its state
// directory. st may be nil or partial (a create that died half-way): every
// step works from what is on disk and tolerates what is missing.
func destroy(d Dir, st *State) error {
	if st == nil {
		st, _ = d.read()
	}
	if st != nil && st.ShimPID == 0 {
		// create died before recording the shim; the shim recorded itself.
		if b, err := os.ReadFile(d.ShimPIDFile()); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && isShim(pid, d) {
				st.ShimPID = pid
			}
		}
	}
	if st != nil && alive(st.ShimPID, st.ShimStart) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := shimCall(ctx, d, ctlRequest{Op: ctlShutdown}); err == nil {
			deadline := time.Now().Add(2 * vmStopTimeout)
			for alive(st.ShimPID, st.ShimStart) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
		}
		cancel()
		killAndWait(st.ShimPID, st.ShimStart, 5*time.Second)
	}
	var errs []error
	if err := hypervisor.KillVMM(d.QEMUPIDFile()); err != nil {
		errs = append(errs, err)
	}
	if err := removeMemberOf(d); err != nil {
		errs = append(errs, err)
	}
	if err := unmountUnder(string(d)); err != nil {
		errs = append(errs, err)
	}
	if err := removeNetwork(d); err != nil {
		errs = append(errs, err)
	}
	if err := removeHostCgroups(d); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		if err := os.RemoveAll(string(d)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delete %s: %w", filepath.Base(string(d)), err)
	}
	if st != nil && len(st.Poststop) > 0 && st.Phase != PhaseCreating {
		warnHooks("poststop", st.Poststop, &OCIState{OCIVersion: ociVersion, ID: st.ID, Status: StatusStopped,
			Bundle: st.Bundle, Rootfs: st.Rootfs, Created: st.Created, Annotations: st.Annotations})
	}
	return nil
}

// OCIState is the state document of the OCI runtime spec, as runc prints it.
type OCIState struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Status      Status            `json:"status"`
	PID         int               `json:"pid"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Owner       string            `json:"owner"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ociVersion is the runtime-spec version skiff implements.
const ociVersion = "1.2.0"

// State reports a container's state, computed live.
func (s *Store) State(id string) (*OCIState, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	st, err := s.Dir(id).read()
	if err != nil {
		if errors.Is(err, ErrNotExist) {
			return nil, fmt.Errorf("container %q does not exist", id)
		}
		return nil, err
	}
	return s.ociState(st), nil
}

func (s *Store) ociState(st *State) *OCIState {
	status := s.Dir(st.ID).status(st)
	o := &OCIState{
		OCIVersion:  ociVersion,
		ID:          st.ID,
		Status:      status,
		Bundle:      st.Bundle,
		Rootfs:      st.Rootfs,
		Created:     st.Created,
		Owner:       "",
		Annotations: st.Annotations,
	}
	if status != StatusStopped {
		o.PID = st.ShimPID
	}
	return o
}

// List reports every container that finished being created.
func (s *Store) List() ([]*OCIState, error) {
	ids, err := s.ids()
	if err != nil {
		return nil, err
	}
	var out []*OCIState
	for _, id := range ids {
		st, err := s.Dir(id).read()
		if err != nil || st.Phase == PhaseCreating {
			continue
		}
		out = append(out, s.ociState(st))
	}
	return out, nil
}
