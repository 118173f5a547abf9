package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/skiff-oci/skiff/internal/proc"
	"github.com/skiff-oci/skiff/sandbox/hostfs"
	"github.com/skiff-oci/skiff/sandbox/hostnet"
	"github.com/skiff-oci/skiff/sandbox/oci"
	"github.com/skiff-oci/skiff/sandbox/shimctl"
	"github.com/skiff-oci/skiff/sandbox/state"
)

// A pod's containers (CRI annotations name their sandbox container) run
// in the VM of that sandbox. Each has a host process of its own, `skiff
// shim --sandbox S ID`, that callers wait on: it hands its stdio to the
// sandbox's shim, which creates the container in the VM, and it exits
// with the container's status (137 when the VM or its shim died).

// createInPod creates container id in the running sandbox sbID.
func (r *Runtime) createInPod(id, sbID string, o CreateOptions, b *oci.Bundle, consoleSocket string) (_ *Created, err error) {
	if err := state.ValidateID(sbID); err != nil {
		return nil, fmt.Errorf("container %s: its sandbox: %w", id, err)
	}
	sb, err := r.root.Sandbox(sbID).Read()
	if err != nil || !state.ShimAlive(sb) {
		return nil, fmt.Errorf("container %s: its sandbox %s is not running (create the pod's sandbox container first)", id, sbID)
	}
	d, lock, err := r.root.Claim(id)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	rec := &state.Container{ID: id, Bundle: b.Dir, Rootfs: b.Rootfs, Annotations: b.Spec.Annotations, Sandbox: sbID,
		Created: time.Now().UTC(), Phase: state.PhaseCreating, Poststop: oci.HooksOf(b.Spec).Poststop}
	defer func() {
		if err != nil {
			if cerr := r.destroyPodContainer(&Container{ID: id, dir: d, rec: rec}); cerr != nil {
				slog.Warn("clean up after failed create", "id", id, "error", cerr)
			}
		}
	}()
	if err := d.Write(rec); err != nil {
		return nil, err
	}
	args := append(append([]string{}, o.ShimArgs[1:]...), "shim", "--sandbox", sbID)
	if consoleSocket != "" {
		args = append(args, "--console-socket", consoleSocket)
	}
	cmd, err := startHelper(o.ShimArgs[0], append(args, id), hostnet.NetNSPath(b.Spec), func(pid int) error {
		rec.PID = pid
		rec.PIDStart, _ = proc.StartTime(pid)
		return d.Write(rec)
	})
	if err != nil {
		return nil, err
	}
	rec.Phase = state.PhaseCreated
	if err := d.Write(rec); err != nil {
		return nil, err
	}
	if o.PIDFile != "" {
		if err := writePIDFile(o.PIDFile, rec.PID); err != nil {
			return nil, err
		}
	}
	return &Created{ID: id, Shim: cmd, RestoreTerminal: func() {}}, nil
}

// startHelper starts a helper (a shim) with the caller's stdio, in its own
// session, calls started with its PID, and waits for its report on fd 3:
// the container exists, or why not.
func startHelper(bin string, args []string, netns string, started func(pid int) error) (*exec.Cmd, error) {
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer readyR.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{readyW}
	if netns != "" {
		cmd.Env = append(os.Environ(), shimctl.NetNSEnv+"="+netns)
	}
	// Its own session: the caller's terminal signals must not reach it, and
	// it must outlive create.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		readyW.Close()
		return nil, fmt.Errorf("start shim: %w", err)
	}
	readyW.Close()
	kill := func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
	// Recorded before waiting, so that delete --force finds the helper if
	// this process dies now.
	if err := started(cmd.Process.Pid); err != nil {
		kill()
		return nil, err
	}
	msg, rerr := readReady(readyR)
	if rerr != nil || msg != "ok" {
		kill()
		if rerr != nil {
			return nil, fmt.Errorf("shim: %w", rerr)
		}
		return nil, errors.New(strings.TrimPrefix(msg, "error: "))
	}
	return cmd, nil
}

// PodContainer is the body of `skiff shim --sandbox S ID`: the host process
// standing for a pod's container. It asks the sandbox's shim to create the
// container with this process's stdio (none with a console socket),
// reports on ready, passes signals on, and returns the container's exit
// status: 137 if the sandbox went away first.
func (r *Runtime) PodContainer(ctx context.Context, sbID, id, consoleSocket string, ready *os.File, signals <-chan os.Signal) int {
	report := func(msg string) {
		fmt.Fprintln(ready, msg)
		ready.Close()
	}
	sb := &Sandbox{dir: r.root.Sandbox(sbID)}
	var files []*os.File
	if consoleSocket == "" {
		files = []*os.File{os.Stdin, os.Stdout, os.Stderr}
	}
	x, err := sb.shim().AddContainer(ctx, id, shimctl.AddContainerRequest{ConsoleSocket: consoleSocket}, files)
	if err != nil {
		slog.Error("create failed", "id", id, "error", err)
		report("error: " + strings.ReplaceAll(err.Error(), "\n", " "))
		return 1
	}
	report("ok")
	status, err := x.Wait(signals)
	if err != nil {
		slog.Error("lost the container's sandbox", "id", id, "sandbox", sbID, "error", err)
		return exitVMLost
	}
	return status
}

// exitVMLost is a pod container's status when its VM died under it: what a
// shell reports for a process killed by SIGKILL.
const exitVMLost = 128 + int(syscall.SIGKILL)

// destroyPodContainer removes a pod's container: from its sandbox's VM if
// the sandbox still runs, its host process, its binds, its directory.
func (r *Runtime) destroyPodContainer(c *Container) error {
	sd := r.root.Sandbox(c.rec.Sandbox)
	var errs []error
	if sb, err := sd.Read(); err == nil && state.ShimAlive(sb) {
		ctx, cancel := context.WithTimeout(context.Background(), shimctl.CallTimeout)
		if err := (&Sandbox{dir: sd, rec: sb}).shim().RemoveContainer(ctx, c.ID); err != nil && !strings.Contains(err.Error(), "is not in sandbox") {
			slog.Warn("remove the container from its sandbox", "id", c.ID, "error", err)
		}
		cancel()
	}
	proc.KillAndWait(c.rec.PID, c.rec.PIDStart, 5*time.Second)
	if err := hostfs.RemovePodContainer(string(sd), c.ID); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		if err := hostfs.RemoveDir(string(c.dir)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delete %s: %w", c.ID, err)
	}
	return nil
}
