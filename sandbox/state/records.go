package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Container is a container's record, state.json in its directory. It is
// written atomically and only under the container's lock. What can be
// known live (does its shim run?) is never stored here as truth.
type Container struct {
	ID          string            `json:"id"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Created     time.Time         `json:"created"`
	// Sandbox is the ID of the sandbox the container runs in.
	Sandbox string `json:"sandbox"`
	// PID and PIDStart name the host process standing for the
	// container's process (the sandbox's shim for the container that
	// made the sandbox, a process of its own for a pod's other
	// containers): it lives exactly as long as the container's process.
	PID      int    `json:"pid,omitempty"`
	PIDStart uint64 `json:"pidStart,omitempty"`

	// Phase is "creating" until create finished, then "created"; start
	// moves it to "started". Whether the process still runs is live.
	Phase string `json:"phase"`

	// Poststop hooks run when the container is deleted, after the bundle
	// may be gone: they are kept here.
	Poststop []specs.Hook `json:"poststop,omitempty"`
}

// Phases.
const (
	PhaseCreating = "creating"
	PhaseCreated  = "created"
	PhaseStarted  = "started"
)

// Sandbox is a sandbox's record, sandbox.json in its directory: what its
// VM needs and what finds its shim. Today a sandbox holds the one
// container that made it.
type Sandbox struct {
	ID string `json:"id"`
	// Containers are the IDs of the containers it holds.
	Containers []string `json:"containers"`
	// ShimPID and ShimStart name the shim (its start time tells it from
	// a process that got its PID later).
	ShimPID   int    `json:"shimPid,omitempty"`
	ShimStart uint64 `json:"shimStart,omitempty"`
	// Config is the resolved configuration the sandbox was created with,
	// so that later verbs and the shim agree with create.
	Config json.RawMessage `json:"config,omitempty"`
}

// Read loads state.json. A directory without one is a create that was
// interrupted before writing it: a container that is still creating.
func (d ContainerDir) Read() (*Container, error) {
	var c Container
	err := readJSON(string(d), d.RecordFile(), &c)
	if errors.Is(err, errNoRecord) {
		return &Container{ID: d.ID(), Sandbox: d.ID(), Phase: PhaseCreating}, nil
	}
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// Write replaces state.json atomically.
func (d ContainerDir) Write(c *Container) error { return writeJSON(d.RecordFile(), c) }

// Read loads sandbox.json; a directory without one is a sandbox whose
// create died before recording it, with nothing known of it yet.
func (d SandboxDir) Read() (*Sandbox, error) {
	var s Sandbox
	err := readJSON(string(d), d.RecordFile(), &s)
	if errors.Is(err, errNoRecord) {
		return &Sandbox{ID: d.ID()}, nil
	}
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// Write replaces sandbox.json atomically.
func (d SandboxDir) Write(s *Sandbox) error { return writeJSON(d.RecordFile(), s) }

var errNoRecord = errors.New("no record")

// readJSON decodes file; errNoRecord if it is missing from an existing
// dir, ErrNotExist if dir is missing too.
func readJSON(dir, file string, v any) error {
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(dir); err != nil {
			return ErrNotExist
		}
		return errNoRecord
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("corrupt %s: %w (delete --force removes it)", file, err)
	}
	return nil
}

// writeJSON replaces file atomically: a temp file beside it, synced, then
// renamed over it.
func writeJSON(file string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+"-*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), file)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	return nil
}
