// Package sandbox is the verbs as the CLI runs them (create, start, kill,
// delete, state, list, exec, pause, resume, ps, update, events): load a
// container locked, check the transition (state's guards), then act,
// through its sandbox's shim (shimctl) or on the disk. Commands call one
// function of this package per verb; it never prints for the user.
//
// It runs in the CLI's process only: what runs in the shim is the shim
// package, reached through shimctl. It may import state, shimctl, oci, the
// factory and the host plumbing (for delete --force after a crash); never
// the shim or the agent.
package sandbox

import (
	"errors"
	"fmt"

	"github.com/skiff-oci/skiff/internal/fspath"
	"github.com/skiff-oci/skiff/sandbox/oci"
	"github.com/skiff-oci/skiff/sandbox/shimctl"
	"github.com/skiff-oci/skiff/sandbox/state"
)

// Runtime is the verbs over one state root.
type Runtime struct {
	root state.Root
}

// New returns the runtime of the state root root (--root). The root is
// made absolute and its symlinks resolved once, here: a relative --root or
// one through a symlink (/var/run) must name the same directories in
// every process, and mount points are compared with mountinfo's canonical
// paths.
func New(root string) *Runtime { return &Runtime{root: state.Root(fspath.Canonical(root))} }

// ShimLog is where the shim of container id's sandbox logs without --log.
func (r *Runtime) ShimLog(id string) string {
	return r.root.Sandbox(id).ShimLog()
}

// Root is the canonical state root.
func (r *Runtime) Root() string { return string(r.root) }

// Sandbox is a sandbox as the verbs see it: its directory and record.
type Sandbox struct {
	dir state.SandboxDir
	rec *state.Sandbox
}

// shim is the client of the sandbox's shim.
func (sb *Sandbox) shim() shimctl.Client { return shimctl.Client{Socket: sb.dir.ShimSocket()} }

// Container is a container loaded for a verb: its record and its
// sandbox's, read under its lock (unless unlocked since).
type Container struct {
	ID      string
	dir     state.ContainerDir
	rec     *state.Container
	sandbox *Sandbox
	lock    *state.Lock
}

// Status is the container's status, computed live.
func (c *Container) Status() oci.Status { return state.Status(c.dir, c.rec) }

// load locks an existing container and reads its records.
func (r *Runtime) load(id string) (*Container, error) {
	if err := state.ValidateID(id); err != nil {
		return nil, err
	}
	d := r.root.Container(id)
	l, err := d.Lock()
	if err != nil {
		if errors.Is(err, state.ErrNotExist) {
			return nil, fmt.Errorf("container %q does not exist", id)
		}
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	c, err := r.read(d)
	if err != nil {
		l.Unlock()
		return nil, err
	}
	c.lock = l
	return c, nil
}

// read reads a container's records without its lock.
func (r *Runtime) read(d state.ContainerDir) (*Container, error) {
	rec, err := d.Read()
	if err != nil {
		if errors.Is(err, state.ErrNotExist) {
			return nil, fmt.Errorf("container %q does not exist", d.ID())
		}
		return nil, err
	}
	sbID := rec.Sandbox
	if sbID == "" || state.ValidateID(sbID) != nil {
		sbID = rec.ID
	}
	sd := r.root.Sandbox(sbID)
	sb, err := sd.Read()
	if errors.Is(err, state.ErrNotExist) {
		// A pod's sandbox deleted before this container (a VM that died
		// lets callers clean up in any order): the container stays
		// readable and deletable on its own.
		sb, err = &state.Sandbox{ID: sbID}, nil
	}
	if err != nil {
		return nil, err
	}
	return &Container{ID: rec.ID, dir: d, rec: rec, sandbox: &Sandbox{dir: sd, rec: sb}}, nil
}

// done releases what load took.
func (c *Container) done() { c.lock.Unlock() }
