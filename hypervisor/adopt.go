package hypervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/skiff-oci/skiff/internal/unixsock"

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
	if q.cfg.GuardSocket != "" {
		owner, err := bindGuard(q.cfg.GuardSocket)
		if err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("adopt qemu %d: %w", pid, err)
		}
		q.owner = owner
	}
	q.adopted = pid
	q.done = make(chan struct{})
	go func() {
		defer unix.Close(fd)
		if q.owner != nil {
			defer q.owner.Close()
		}
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

// guardBindTimeout bounds binding a waiting VM's guard: it answers at once
// or is broken.
const guardBindTimeout = 5 * time.Second

// bindGuard makes this process the owner of a waiting VM: the connection
// returned must stay open for as long as the VM is to live.
func bindGuard(socket string) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(context.Background(), guardBindTimeout)
	c, err := unixsock.Dial(dctx, socket)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("bind the VM's guard: %w", err)
	}
	c.SetReadDeadline(time.Now().Add(guardBindTimeout))
	line, err := bufio.NewReaderSize(oneByteReader{c}, 16).ReadString('\n')
	if err != nil || line != guardBound+"\n" {
		c.Close()
		return nil, fmt.Errorf("bind the VM's guard on %s: answered %q: %v", socket, line, err)
	}
	c.SetReadDeadline(time.Time{})
	return c, nil
}
