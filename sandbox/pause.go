package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// pausedMarker is created by the shim once the container's processes are
// frozen and removed once they are thawed: like startedMarker, the shim,
// not a verb that might die half-way, records what happened.
const pausedMarker = "paused"

// Pause freezes every process of the container (its cgroup in the guest).
func (s *Store) Pause(ctx context.Context, id string) error {
	d, l, st, err := s.open(id)
	if err != nil {
		return err
	}
	defer l.Unlock()
	if err := canPause(id, d.status(st)); err != nil {
		return err
	}
	if err := shimCall(ctx, d, ctlRequest{Op: ctlPause}); err != nil {
		return fmt.Errorf("pause container %s: %w", id, err)
	}
	return nil
}

// Resume thaws a paused container.
func (s *Store) Resume(ctx context.Context, id string) error {
	d, l, st, err := s.open(id)
	if err != nil {
		return err
	}
	defer l.Unlock()
	if err := canResume(id, d.status(st)); err != nil {
		return err
	}
	if err := shimCall(ctx, d, ctlRequest{Op: ctlResume}); err != nil {
		return fmt.Errorf("resume container %s: %w", id, err)
	}
	return nil
}

// Processes lists the container's processes as the guest sees them.
func (s *Store) Processes(ctx context.Context, id string) ([]protocol.ProcessInfo, error) {
	d, l, st, err := s.open(id)
	if err != nil {
		return nil, err
	}
	status := d.status(st)
	l.Unlock()
	if status == StatusStopped {
		return []protocol.ProcessInfo{}, nil // as runc: nothing runs
	}
	if err := canPs(id, status); err != nil {
		return nil, err
	}
	rsp, err := shimQuery(ctx, d, ctlRequest{Op: ctlPs})
	if err != nil {
		return nil, fmt.Errorf("list processes of container %s: %w", id, err)
	}
	if rsp.Processes == nil {
		return []protocol.ProcessInfo{}, nil
	}
	return rsp.Processes, nil
}

// containerOp serves pause, resume and ps in the shim.
func (s *shim) containerOp(ctx context.Context, op string) ctlResponse {
	var err error
	var rsp ctlResponse
	switch op {
	case ctlPause:
		if err = s.agent.PauseContainer(ctx, s.st.ID); err == nil {
			err = touch(s.d.path(pausedMarker))
		}
	case ctlResume:
		if err = s.agent.ResumeContainer(ctx, s.st.ID); err == nil {
			if rerr := os.Remove(s.d.path(pausedMarker)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = rerr
			}
		}
	case ctlPs:
		rsp.Processes, err = s.agent.ListProcesses(ctx, s.st.ID)
	}
	if err != nil {
		rsp.Error = err.Error()
	}
	return rsp
}
