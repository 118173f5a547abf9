package sandbox

import (
	"fmt"
	"os"
)

// Status is a container's status as the OCI runtime spec names it.
type Status string

const (
	StatusCreating Status = "creating"
	StatusCreated  Status = "created"
	StatusRunning  Status = "running"
	StatusStopped  Status = "stopped"
	StatusPaused   Status = "paused"
)

// startedMarker is created by the shim once the container's process was
// released: the shim, not a verb that might die half-way, knows it ran.
const startedMarker = "started"

// status computes a container's status live: whether its shim (the host
// process that lives exactly as long as the container's process) is alive
// decides between stopped and the rest.
func (d Dir) status(st *State) Status {
	if st.Phase == PhaseCreating {
		// create holds the lock from start to end: a free lock means the
		// create died half-way, and nothing will ever run.
		if d.locked() {
			return StatusCreating
		}
		return StatusStopped
	}
	if !alive(st.ShimPID, st.ShimStart) {
		return StatusStopped
	}
	if _, err := os.Stat(d.path(pausedMarker)); err == nil {
		return StatusPaused
	}
	if _, err := os.Stat(d.path(startedMarker)); err == nil {
		return StatusRunning
	}
	return StatusCreated
}

// The guards: which verb may act on which status. Kept in one place.

func canStart(id string, s Status) error {
	if s != StatusCreated {
		return fmt.Errorf("cannot start container %s: it is %s, not created", id, s)
	}
	return nil
}

func canKill(id string, s Status) error {
	// A paused container takes signals as runc's does: SIGKILL ends it,
	// others wait for resume.
	if s != StatusCreated && s != StatusRunning && s != StatusPaused {
		return fmt.Errorf("cannot kill container %s: it is %s (container not running)", id, s)
	}
	return nil
}

func canDelete(id string, s Status, force bool) error {
	if force || s == StatusStopped || s == StatusCreated {
		return nil
	}
	return fmt.Errorf("cannot delete container %s that is %s: stop it first or use delete --force", id, s)
}

func canExec(id string, s Status) error {
	if s == StatusPaused {
		return fmt.Errorf("cannot exec in container %s: it is paused (resume it first)", id)
	}
	if s != StatusCreated && s != StatusRunning {
		return fmt.Errorf("cannot exec in container %s: it is %s (exec needs a created or running container)", id, s)
	}
	return nil
}

func canPause(id string, s Status) error {
	if s != StatusRunning && s != StatusCreated {
		return fmt.Errorf("cannot pause container %s: it is %s, not running", id, s)
	}
	return nil
}

func canResume(id string, s Status) error {
	if s != StatusPaused {
		return fmt.Errorf("cannot resume container %s: it is %s, not paused", id, s)
	}
	return nil
}

func canPs(id string, s Status) error {
	if s == StatusStopped || s == StatusCreating {
		return fmt.Errorf("cannot list processes of container %s: it is %s", id, s)
	}
	return nil
}

func canUpdate(id string, s Status) error {
	if s != StatusCreated && s != StatusRunning && s != StatusPaused {
		return fmt.Errorf("cannot update container %s: it is %s (container not running)", id, s)
	}
	return nil
}

func canStats(id string, s Status) error {
	if s != StatusCreated && s != StatusRunning && s != StatusPaused {
		return fmt.Errorf("cannot read stats of container %s: it is %s (container not running)", id, s)
	}
	return nil
}
