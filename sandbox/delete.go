package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/skiff-oci/skiff/hypervisor"
	"github.com/skiff-oci/skiff/internal/proc"
	"github.com/skiff-oci/skiff/sandbox/factory"
	"github.com/skiff-oci/skiff/sandbox/hostcgroup"
	"github.com/skiff-oci/skiff/sandbox/hostfs"
	"github.com/skiff-oci/skiff/sandbox/hostnet"
	"github.com/skiff-oci/skiff/sandbox/oci"
	"github.com/skiff-oci/skiff/sandbox/state"
)

// shutdownWait bounds the wait for a shim that was asked to stop its VM.
const shutdownWait = 6 * time.Second

// Delete removes a container and, with its last container, its sandbox:
// the VM, shim, host mounts and state. With force it also takes over from
// a verb that holds the lock too long (a create hung or killed half-way):
// it kills what that verb started.
func (r *Runtime) Delete(ctx context.Context, id string, force bool) error {
	c, err := r.load(id)
	if errors.Is(err, state.ErrLocked) && force {
		slog.Warn("container is locked by another command; deleting anyway", "id", id)
		return r.destroyUnlocked(id)
	}
	if err != nil {
		return err
	}
	defer c.done()
	if err := state.CanDelete(id, c.Status(), force); err != nil {
		return err
	}
	return r.destroyContainer(c)
}

// destroyUnlocked is delete --force of a container whose lock another
// verb holds: whatever its records say.
func (r *Runtime) destroyUnlocked(id string) error {
	if err := state.ValidateID(id); err != nil {
		return err
	}
	d := r.root.Container(id)
	c, err := r.read(d)
	if err != nil {
		return destroy(d, r.root.Sandbox(id))
	}
	return r.destroyContainer(c)
}

// destroyContainer removes c (and the sandbox it made, if it made one),
// then runs c's poststop hooks.
func (r *Runtime) destroyContainer(c *Container) error {
	remove := func() error { return destroy(c.dir, c.sandbox.dir) }
	if c.rec.Sandbox != c.ID && c.rec.Sandbox != "" {
		remove = func() error { return r.destroyPodContainer(c) }
	}
	if err := remove(); err != nil {
		return err
	}
	rec := c.rec
	if len(rec.Poststop) > 0 && rec.Phase != state.PhaseCreating {
		oci.WarnHooks("poststop", rec.Poststop, &oci.State{OCIVersion: oci.Version, ID: rec.ID, Status: oci.StatusStopped,
			Bundle: rec.Bundle, Rootfs: rec.Rootfs, Created: rec.Created, Annotations: rec.Annotations})
	}
	return nil
}

// destroy ends whatever still runs of a sandbox and removes its directory
// and its container's. The records may be missing or partial (a create
// that died half-way): every step works from what is on disk and
// tolerates what is missing.
func destroy(d state.ContainerDir, sd state.SandboxDir) error {
	sb, _ := sd.Read()
	if sb == nil {
		sb = &state.Sandbox{}
	}
	stopShim(sd, sb)
	var errs []error
	if err := hypervisor.KillVMM(sd.QEMUPIDFile()); err != nil {
		errs = append(errs, err)
	}
	dir := string(sd)
	for _, undo := range []func(string) error{factory.RemoveMemberOf, hostfs.Unmount, hostnet.Remove, hostcgroup.Remove} {
		if err := undo(dir); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		for _, p := range []string{string(d), dir} {
			if err := hostfs.RemoveDir(p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delete %s: %w", d.ID(), err)
	}
	return nil
}

// stopShim asks a live shim to stop its VM and exit, and kills it if it
// does not. A shim create never recorded is found by the PID file it
// wrote itself.
func stopShim(sd state.SandboxDir, sb *state.Sandbox) {
	if sb.ShimPID == 0 {
		if b, err := os.ReadFile(sd.ShimPIDFile()); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && state.IsShim(pid, sd) {
				sb.ShimPID = pid
			}
		}
	}
	if !state.ShimAlive(sb) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client := (&Sandbox{dir: sd, rec: sb}).shim()
	if err := client.Shutdown(ctx); err == nil {
		proc.WaitGone(sb.ShimPID, sb.ShimStart, shutdownWait)
	}
	proc.KillAndWait(sb.ShimPID, sb.ShimStart, 5*time.Second)
}
