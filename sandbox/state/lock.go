package state

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/skiff-oci/skiff/internal/flock"
)

// Lock is an exclusive flock on a container's state directory, taken by
// every verb that changes the container.
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

// ErrLocked is returned when another verb holds the lock too long.
var ErrLocked = errors.New("another skiff command is working on this container")

// Lock takes the container's lock, waiting for other verbs to finish.
func (d ContainerDir) Lock() (*Lock, error) { return d.LockWithin(lockWait) }

// LockWithin is Lock with a bound on the wait.
func (d ContainerDir) LockWithin(wait time.Duration) (*Lock, error) {
	f, err := os.Open(string(d))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNotExist
		}
		return nil, err
	}
	if err := flock.Within(f.Fd(), wait); err != nil {
		f.Close()
		if errors.Is(err, flock.ErrTimeout) {
			return nil, ErrLocked
		}
		return nil, fmt.Errorf("lock %s: %w", d, err)
	}
	// The directory may have been deleted, or deleted and made again by
	// another create, while we waited: the lock must be on the directory
	// the path names now.
	if !sameFile(f, string(d)) {
		f.Close()
		return nil, ErrNotExist
	}
	return &Lock{f: f}, nil
}

// sameFile reports whether path still names the open file f.
func sameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

// Locked tells whether some process holds the container's lock now.
func (d ContainerDir) Locked() bool {
	l, err := d.LockWithin(0)
	if err != nil {
		return errors.Is(err, ErrLocked)
	}
	l.Unlock()
	return false
}
