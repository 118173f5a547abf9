package hypervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"
)

// VM templates: a booted, idle guest is saved once with QEMU's migration,
// its RAM in a file; a sandbox then starts by restoring that state instead
// of booting. The template's RAM file is mapped shared while the template
// runs (its pages land in the file), and privately by every clone (clones
// read the template's pages and copy only those they write). The migration
// capability x-ignore-shared keeps RAM out of the saved state: only device
// state is in it, a few tens of kB.

// Backend devices (a chardev's socket path, an fsdev's directory) may
// differ between template and clone; the devices themselves must be the
// same, so a clone is started with the template's exact device list.

// memoryArgs is the RAM backend and the -machine suffix for a file-backed
// guest, or nothing when RAM is anonymous.
func (q *qemu) memoryArgs() (backend []string, machineSuffix string) {
	c := q.cfg
	if c.MemoryFile == "" {
		if c.SharedFS == FSVirtio {
			return sharedMemoryArgs(c.MemoryMiB)
		}
		return nil, ""
	}
	share := "off"
	if c.MemoryShared {
		share = "on"
	}
	return []string{"-object", "memory-backend-file,id=mem,size=" + strconv.Itoa(c.MemoryMiB) + "M,mem-path=" +
		optValue(c.MemoryFile) + ",share=" + share}, ",memory-backend=mem"
}

// incomingArgs makes QEMU wait for a migration stream instead of booting.
func (q *qemu) incomingArgs() []string {
	if !q.cfg.Incoming {
		return nil
	}
	return []string{"-incoming", "defer"}
}

// The names under which the migration's file descriptor is handed to
// QEMU (QMP getfd); one session uses one at a time.
const (
	saveFD    = "skiff-save"
	restoreFD = "skiff-restore"
)

// qmpExitGrace is how long a failed QMP session waits for QEMU's exit.
const qmpExitGrace = 500 * time.Millisecond

// qmpDo runs one QMP session: connect, run f, close. QEMU serves one QMP
// client at a time, so sessions are kept short. A QEMU started by this
// process that exits meanwhile (a template's memory file truncated behind
// skiff's back, say) ends the session at once, with QEMU's own words,
// rather than when ctx does.
func (q *qemu) qmpDo(ctx context.Context, f func(*QMP) error) error {
	q.mu.Lock()
	done := q.done
	q.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if done != nil {
		go func() {
			select {
			case <-done:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	exited := func(err error) error {
		if err == nil || done == nil {
			return err
		}
		// A QEMU that fails closes its QMP socket as it exits: give
		// the exit a moment to be seen, for its reason.
		select {
		case <-done:
			if q.err != nil {
				return q.err // "qemu exited: ..." and its stderr's end
			}
			return fmt.Errorf("qemu exited: %w", err)
		case <-time.After(qmpExitGrace):
			return err
		}
	}
	m, err := DialQMP(ctx, q.cfg.QMPSocket)
	if err != nil {
		return exited(err)
	}
	defer m.Close()
	return exited(f(m))
}

func ignoreShared(ctx context.Context, m *QMP) error {
	_, err := m.Execute(ctx, "migrate-set-capabilities", map[string]any{
		"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}},
	})
	return err
}

// waitMigration polls query-migrate until the migration completed.
func waitMigration(ctx context.Context, m *QMP) error {
	for {
		raw, err := m.Execute(ctx, "query-migrate", nil)
		if err != nil {
			return err
		}
		var st struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("query-migrate: %w", err)
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("migration %s: %s", st.Status, st.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("migration not completed (%s): %w", st.Status, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// SaveTemplate stops the guest and writes its device state to stateFile.
// The guest's RAM is in the MemoryFile the VM was started with (shared);
// the VM stays paused and should be stopped afterwards.
func (q *qemu) SaveTemplate(ctx context.Context, stateFile string) error {
	if q.cfg.MemoryFile == "" || !q.cfg.MemoryShared {
		return fmt.Errorf("save template: the VM's RAM is not a shared memory file")
	}
	// skiff opens the file, not QEMU: QEMU may not spawn a shell (its
	// seccomp sandbox), and needs no access to the template directory.
	f, err := os.OpenFile(stateFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("save template: %w", err)
	}
	defer f.Close()
	return q.qmpDo(ctx, func(m *QMP) error {
		if err := ignoreShared(ctx, m); err != nil {
			return fmt.Errorf("save template: %w", err)
		}
		if err := m.Stop(ctx); err != nil {
			return fmt.Errorf("save template: stop: %w", err)
		}
		if err := m.SendFD(ctx, saveFD, f); err != nil {
			return fmt.Errorf("save template: %w", err)
		}
		if _, err := m.Execute(ctx, "migrate", map[string]any{"uri": "fd:" + saveFD}); err != nil {
			return fmt.Errorf("save template: %w", err)
		}
		if err := waitMigration(ctx, m); err != nil {
			return fmt.Errorf("save template: %w", err)
		}
		return nil
	})
}

// RestoreTemplate loads stateFile into a VM started with Incoming and the
// template's MemoryFile mapped privately, then lets the guest run.
func (q *qemu) RestoreTemplate(ctx context.Context, stateFile string) error {
	if !q.cfg.Incoming {
		return fmt.Errorf("restore template: the VM was not started to receive a migration")
	}
	f, err := os.Open(stateFile)
	if err != nil {
		return fmt.Errorf("restore template: %w", err)
	}
	defer f.Close()
	return q.qmpDo(ctx, func(m *QMP) error {
		if err := ignoreShared(ctx, m); err != nil {
			return fmt.Errorf("restore template: %w", err)
		}
		if err := m.SendFD(ctx, restoreFD, f); err != nil {
			return fmt.Errorf("restore template: %w", err)
		}
		if _, err := m.Execute(ctx, "migrate-incoming", map[string]any{"uri": "fd:" + restoreFD}); err != nil {
			return fmt.Errorf("restore template: %w", err)
		}
		if err := waitMigration(ctx, m); err != nil {
			return fmt.Errorf("restore template: %w", err)
		}
		if err := m.Cont(ctx); err != nil {
			return fmt.Errorf("restore template: cont: %w", err)
		}
		return nil
	})
}

// Templater is implemented by backends that can save and restore VM
// templates.
type Templater interface {
	SaveTemplate(ctx context.Context, stateFile string) error
	RestoreTemplate(ctx context.Context, stateFile string) error
}
