package state

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/skiff-oci/skiff/internal/proc"
	"github.com/skiff-oci/skiff/sandbox/oci"
)

// Status computes a container's status live. The host process standing
// for it lives as long as the container's process, and a little longer
// while its shim stops the VM: whether it is alive, and the shim's exited
// marker, decide between stopped and the rest; the other markers tell the
// rest apart.
func Status(d ContainerDir, c *Container) oci.Status {
	if c.Phase == PhaseCreating {
		// create holds the lock from start to end: a free lock means the
		// create died half-way, and nothing will ever run.
		if d.Locked() {
			return oci.StatusCreating
		}
		return oci.StatusStopped
	}
	if !proc.Alive(c.PID, c.PIDStart) {
		return oci.StatusStopped
	}
	if _, err := os.Stat(d.ExitedMarker()); err == nil {
		return oci.StatusStopped
	}
	if _, err := os.Stat(d.PausedMarker()); err == nil {
		return oci.StatusPaused
	}
	if _, err := os.Stat(d.StartedMarker()); err == nil {
		return oci.StatusRunning
	}
	return oci.StatusCreated
}

// ShimAlive tells whether the shim the record names still runs.
func ShimAlive(sb *Sandbox) bool { return proc.Alive(sb.ShimPID, sb.ShimStart) }

// IsShim checks that pid is the shim of sandbox d, by its command line,
// before anything signals it: a PID read from a file may have been
// recycled.
func IsShim(pid int, d SandboxDir) bool {
	args := proc.Cmdline(pid)
	root := filepath.Dir(string(d))
	if !strings.Contains(strings.Join(args, "\x00"), root) {
		return false
	}
	for i, a := range args {
		if a == "shim" && i+1 < len(args) && args[i+1] == d.ID() {
			return true
		}
	}
	return false
}

// The guards: which verb may act on which status. Kept in one place.

func CanStart(id string, s oci.Status) error {
	if s != oci.StatusCreated {
		return fmt.Errorf("cannot start container %s: it is %s, not created", id, s)
	}
	return nil
}

func CanKill(id string, s oci.Status) error {
	// A paused container takes signals as runc's does: SIGKILL ends it,
	// others wait for resume.
	if s != oci.StatusCreated && s != oci.StatusRunning && s != oci.StatusPaused {
		return fmt.Errorf("cannot kill container %s: it is %s (container not running)", id, s)
	}
	return nil
}

func CanDelete(id string, s oci.Status, force bool) error {
	if force || s == oci.StatusStopped || s == oci.StatusCreated {
		return nil
	}
	return fmt.Errorf("cannot delete container %s that is %s: stop it first or use delete --force", id, s)
}

func CanExec(id string, s oci.Status) error {
	if s == oci.StatusPaused {
		return fmt.Errorf("cannot exec in container %s: it is paused (resume it first)", id)
	}
	if s != oci.StatusCreated && s != oci.StatusRunning {
		return fmt.Errorf("cannot exec in container %s: it is %s (exec needs a created or running container)", id, s)
	}
	return nil
}

func CanPause(id string, s oci.Status) error {
	if s != oci.StatusRunning && s != oci.StatusCreated {
		return fmt.Errorf("cannot pause container %s: it is %s, not running", id, s)
	}
	return nil
}

func CanResume(id string, s oci.Status) error {
	if s != oci.StatusPaused {
		return fmt.Errorf("cannot resume container %s: it is %s, not paused", id, s)
	}
	return nil
}

func CanPs(id string, s oci.Status) error {
	if s == oci.StatusStopped || s == oci.StatusCreating {
		return fmt.Errorf("cannot list processes of container %s: it is %s", id, s)
	}
	return nil
}

func CanUpdate(id string, s oci.Status) error {
	if s != oci.StatusCreated && s != oci.StatusRunning && s != oci.StatusPaused {
		return fmt.Errorf("cannot update container %s: it is %s (container not running)", id, s)
	}
	return nil
}

func CanStats(id string, s oci.Status) error {
	if s != oci.StatusCreated && s != oci.StatusRunning && s != oci.StatusPaused {
		return fmt.Errorf("cannot read stats of container %s: it is %s (container not running)", id, s)
	}
	return nil
}
