package container

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Child is a process the agent started (a container's init, a process
// exec'd into it, a debug shell), followed through the Reaper until it
// has exited.
type Child struct {
	pid    int
	done   chan struct{}
	status unix.WaitStatus
}

// Watch follows the process pid, whose wait status the reaper sends on
// status.
func Watch(pid int, status <-chan unix.WaitStatus) *Child {
	c := &Child{pid: pid, done: make(chan struct{})}
	go func() {
		c.status = <-status
		close(c.done)
	}()
	return c
}

// Pid is the guest PID of the process.
func (c *Child) Pid() int { return c.pid }

// Done is closed once the process has exited and been reaped.
func (c *Child) Done() <-chan struct{} { return c.done }

// ExitStatus blocks until the process exited and returns its status as a
// shell reports it.
func (c *Child) ExitStatus() int {
	<-c.done
	return ExitStatus(c.status)
}

// exited reports whether the process has been reaped: its PID may belong
// to another process then.
func (c *Child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process; an exited process is not an error.
func (c *Child) Signal(sig unix.Signal) error {
	if c.exited() {
		return nil
	}
	if err := unix.Kill(c.pid, sig); err != nil && err != unix.ESRCH {
		return fmt.Errorf("signal %d to %d: %w", sig, c.pid, err)
	}
	return nil
}

// kill kills the process and waits until it has been reaped: a setup
// that failed leaves no process behind.
func (c *Child) kill() {
	c.Signal(unix.SIGKILL)
	<-c.done
}

// ExitStatus encodes a wait status the way a shell does: the exit code, or
// 128+N for death by signal N.
func ExitStatus(ws unix.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return 255
}
