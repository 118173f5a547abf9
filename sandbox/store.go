package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// DefaultRoot is the state root when --root is not given.
const DefaultRoot = "/run/skiff"

// Store is the state root: one directory per container.
type Store struct {
	Root string
}

// ErrNotExist is returned for an ID without a state directory.
var ErrNotExist = errors.New("does not exist")

// State is what state.json holds. It is written atomically (temp file and
// rename) and only under the container's lock. What can be known live (is
// the shim alive?) is never stored here as truth.
type State struct {
	ID          string            `json:"id"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Created     time.Time         `json:"created"`

	// Phase is "creating" until create finished, then "created"; start
	// moves it to "started". Whether the process still runs is live.
	Phase string `json:"phase"`

	ShimPID   int    `json:"shimPid,omitempty"`
	ShimStart uint64 `json:"shimStart,omitempty"`
	// GuestPID is the container process's PID inside the guest.
	GuestPID int `json:"guestPid,omitempty"`

	// Config is the resolved configuration the sandbox was created with, so
	// that later verbs and the shim agree with create.
	Config json.RawMessage `json:"config,omitempty"`
	// Accel is the accelerator the VM runs under.
	Accel string `json:"accel,omitempty"`
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

// Dir is the state directory of one container.
type Dir string

func (d Dir) path(name string) string { return filepath.Join(string(d), name) }

// Files in a state directory.
func (d Dir) StateFile() string   { return d.path("state.json") }
func (d Dir) ShimSocket() string  { return d.path("shim.sock") }
func (d Dir) AgentSocket() string { return d.path("agent.sock") }
func (d Dir) QMPSocket() string   { return d.path("qmp.sock") }
func (d Dir) ConsoleLog() string  { return d.path("console.log") }
func (d Dir) QEMULog() string     { return d.path("qemu.log") }
func (d Dir) QEMUPIDFile() string { return d.path("qemu.pid") }
func (d Dir) ShimLog() string     { return d.path("shim.log") }
func (d Dir) ShimPIDFile() string { return d.path("shim.pid") }
func (d Dir) FilesDir() string    { return d.path("files") }
func (d Dir) DirsDir() string     { return d.path("dirs") }

// Dir returns the state directory of id; id must be valid.
func (s *Store) Dir(id string) Dir { return Dir(filepath.Join(s.Root, id)) }

// ensureRoot creates the root, private to root: other users must not reach
// sockets that control VMs. An existing root that someone else owns, or that others may write to,
// is refused: a socket planted there must never be trusted.
func (s *Store) ensureRoot() error {
	if err := os.MkdirAll(s.Root, 0o700); err != nil {
		return fmt.Errorf("state root %s: %w", s.Root, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(s.Root, &st); err != nil {
		return fmt.Errorf("state root %s: %w", s.Root, err)
	}
	if int(st.Uid) != os.Geteuid() || st.Mode&0o022 != 0 {
		return fmt.Errorf("state root %s is owned by uid %d with mode %o: it must be owned by uid %d and not writable by others (chmod 700 it, or use another --root)", s.Root, st.Uid, st.Mode&0o777, os.Geteuid())
	}
	return nil
}

// Lock is an exclusive flock on a container's state directory.
type Lock struct{ f *os.File }

// Unlock releases the lock.
func (l *Lock) Unlock() {
	if l != nil && l.f != nil {
		l.f.Close()
	}
}

// lockWait bounds how long a verb waits for another verb on the same
// container (a create waits for a whole boot, bounded by boot_timeout).
const lockWait = 90 * time.Second

// errLocked is returned when another verb holds the lock too long.
var errLocked = errors.New("another skiff command is working on this container")

// lock takes the container's lock, waiting for other verbs to finish.
func (d Dir) lock() (*Lock, error) { return d.lockWithin(lockWait) }

// lockWithin is lock with a bound on the wait.
func (d Dir) lockWithin(wait time.Duration) (*Lock, error) {
	f, err := os.Open(string(d))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNotExist
		}
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", d, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, errLocked
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The directory may have been deleted while we waited.
	if _, err := os.Stat(string(d)); err != nil {
		f.Close()
		return nil, ErrNotExist
	}
	return &Lock{f: f}, nil
}

// locked tells whether some process holds the container's lock now.
func (d Dir) locked() bool {
	l, err := d.lockWithin(0)
	if err != nil {
		return errors.Is(err, errLocked)
	}
	l.Unlock()
	return false
}

// create makes the state directory of a new container and locks it. It
// fails if the ID is taken: mkdir is the atomic claim.
func (s *Store) create(id string) (Dir, *Lock, error) {
	if err := s.ensureRoot(); err != nil {
		return "", nil, err
	}
	d := s.Dir(id)
	if err := os.Mkdir(string(d), 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return "", nil, fmt.Errorf("container %q already exists", id)
		}
		return "", nil, fmt.Errorf("create state directory: %w", err)
	}
	l, err := d.lock()
	if err != nil {
		os.Remove(string(d))
		return "", nil, err
	}
	return d, l, nil
}

// read loads state.json. A directory without one is a create that was
// interrupted before writing it.
func (d Dir) read() (*State, error) {
	b, err := os.ReadFile(d.StateFile())
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if _, err := os.Stat(string(d)); err != nil {
				return nil, ErrNotExist
			}
			return &State{ID: filepath.Base(string(d)), Phase: PhaseCreating}, nil
		}
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("corrupt %s: %w (delete --force removes it)", d.StateFile(), err)
	}
	return &st, nil
}

// write replaces state.json atomically.
func (d Dir) write(st *State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(string(d), ".state-*.tmp")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp.Name(), d.StateFile()); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// ids lists the container IDs under the root, sorted.
func (s *Store) ids() ([]string, error) {
	ents, err := os.ReadDir(s.Root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && ValidateID(e.Name()) == nil {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	return ids, nil
}
