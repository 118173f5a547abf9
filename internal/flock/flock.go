// Package flock takes exclusive flock(2) locks with a bound on the wait:
// the state store's per-container lock, the factory's template, pool and
// member locks. It imports nothing of skiff's.
package flock

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// ErrTimeout means the lock was still held by another when the wait ended.
var ErrTimeout = errors.New("lock held by another process")

// poll is how often a held lock is tried again.
const poll = 20 * time.Millisecond

// Within takes an exclusive lock on fd, trying again until wait has
// passed (wait 0: one try). It returns ErrTimeout if the lock stayed held.
func Within(fd uintptr, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		err := unix.Flock(int(fd), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return err
		}
		if !time.Now().Before(deadline) {
			return ErrTimeout
		}
		time.Sleep(poll)
	}
}

// Try takes an exclusive lock on fd without waiting; false if it is held.
func Try(fd uintptr) bool { return Within(fd, 0) == nil }
