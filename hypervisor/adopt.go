package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// AdoptQEMU takes over a running VM that another process started with cfg
// (a pooled sandbox, restored in advance): it is found by cfg.PIDFile. The
// adopter cannot reap it, but Wait still returns once it has exited (it
// watches a pidfd) and Stop works as for a VM it started.
func AdoptQEMU(cfg Config) (Hypervisor, error) {
	q, err := newQEMU(cfg)
	if err != nil {
		return nil, err
	}
	pid, err := readVMMPID(q.cfg.PIDFile)
	if err != nil {
		return nil, fmt.Errorf("adopt qemu: %w", err)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("adopt qemu: pidfd of %d: %w", pid, err)
	}
	// The PID may have been recycled between the check and the pidfd.
	if abs, _ := pidFilePath(q.cfg.PIDFile); !isVMM(pid, abs) {
		unix.Close(fd)
		return nil, fmt.Errorf("adopt qemu: %w", errNotRunning)
	}
	q.adopted = pid
	q.done = make(chan struct{})
	go func() {
		defer unix.Close(fd)
		for {
			_, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, -1)
			if err != unix.EINTR {
				break
			}
		}
		q.err = errors.New("qemu exited")
		close(q.done)
	}()
	return q, nil
}

// stopAdopted is Stop for an adopted VM: quit over QMP, then SIGKILL.
func (q *qemu) stopAdopted(ctx context.Context, timeout time.Duration) error {
	select {
	case <-q.done:
		return nil
	default:
	}
	qctx, cancel := context.WithTimeout(ctx, timeout)
	quitted := q.goQuit(qctx)
	select {
	case <-q.done:
	case <-qctx.Done():
	}
	cancel()
	<-quitted
	select {
	case <-q.done:
		return nil
	default:
	}
	if err := unix.Kill(q.adopted, unix.SIGKILL); err != nil && err != unix.ESRCH {
		return fmt.Errorf("stop qemu: kill %d: %w", q.adopted, err)
	}
	select {
	case <-q.done:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("stop qemu: pid %d still running %v after SIGKILL", q.adopted, killWait)
	}
}
