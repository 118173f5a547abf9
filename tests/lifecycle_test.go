package tests

import (
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// An init process in a PID namespace ignores signals it has no handler
// for, so the long-running containers trap TERM and say so.
const termLoop = `trap "echo got-term; exit 0" TERM; echo started; while true; do sleep 1; done`

// The split lifecycle podman and CRI-O use: create, state, start, kill,
// delete, with the refusals a user meets on the way.
func TestCreateStartKillDelete(t *testing.T) {
	e := e2e.NewEnv(t)
	id := e.ID("life")
	b := e.Bundle("c", e2e.Sh(termLoop), func(s *specs.Spec) {
		s.Annotations = map[string]string{"org.skiff.e2e": "life"}
	})

	pid, out := e.Create(id, b)

	e.Step("created", func(e *e2e.Env) {
		t := e.T
		st := e.State(id)
		if st.Status != "created" {
			t.Errorf("status after create %q, want created", st.Status)
		}
		if st.Pid != pid {
			t.Errorf("state pid %d, pid file %d: they must be the same process", st.Pid, pid)
		}
		if !e2e.Alive(pid) {
			t.Errorf("process %d from the pid file is not alive after create", pid)
		}
		if st.Bundle != b {
			t.Errorf("state bundle %q, want %q", st.Bundle, b)
		}
		if st.Annotations["org.skiff.e2e"] != "life" {
			t.Errorf("state annotations %v, want those of config.json", st.Annotations)
		}
		// Created means stopped before the first instruction of the process.
		time.Sleep(time.Second)
		if data, _ := os.ReadFile(out); strings.Contains(string(data), "started") {
			t.Errorf("the process ran before start: output %q", data)
		}
	})

	e.Step("started", func(e *e2e.Env) {
		e.MustOK(e.RT("start", id))
		e.WaitOutput(out, "started")
		if st := e.State(id); st.Status != "running" || st.Pid != pid {
			e.T.Errorf("after start: status %q pid %d, want running with pid %d", st.Status, st.Pid, pid)
		}
	})

	e.Step("refusals leave it running", func(e *e2e.Env) {
		e.MustFail(e.RT("start", id))
		e.MustFail(e.RT("delete", id))
		e.MustFail(e.RT("kill", id, "SIGFOO"))
		if st := e.State(id); st.Status != "running" || !e2e.Alive(pid) {
			e.T.Errorf("after refused start/delete/kill SIGFOO: status %q, process alive %v; want it still running", st.Status, e2e.Alive(pid))
		}
	})

	e.Step("killed", func(e *e2e.Env) {
		e.MustOK(e.RT("kill", id, "TERM"))
		e.WaitStatus(id, "stopped")
		e.WaitGone(pid)
		e.WaitOutput(out, "got-term")
	})

	e.Step("deleted", func(e *e2e.Env) {
		e.MustOK(e.RT("delete", id))
		msg := e.MustFail(e.RT("state", id))
		if !strings.Contains(msg, "does not exist") {
			e.T.Errorf("state of a deleted container says %q, want it to say the container does not exist", msg)
		}
	})
}

// `run --detach` returns once the container runs; `kill` with no signal
// sends TERM.
func TestRunDetach(t *testing.T) {
	e := e2e.NewEnv(t)
	id := e.ID("det")
	b := e.Bundle("c", e2e.Sh(termLoop))
	pidFile := e.Dir + "/det.pid"
	r, out := e.RTFiles("run", "--detach", "--pid-file", pidFile, "--bundle", b, id)
	e.MustOK(r)
	pid := e.ReadPIDFile(pidFile)
	st := e.State(id)
	if st.Status != "running" || st.Pid != pid {
		t.Errorf("after run --detach: status %q pid %d, want running with the pid file's %d", st.Status, st.Pid, pid)
	}
	e.WaitOutput(out, "started")

	e.MustOK(e.RT("kill", id))
	e.WaitStatus(id, "stopped")
	e.WaitGone(pid)
	e.WaitOutput(out, "got-term")
	e.MustOK(e.RT("delete", id))
}

// delete --force ends a running container and removes it.
func TestDeleteForceRunning(t *testing.T) {
	e := e2e.NewEnv(t)
	id := e.ID("force")
	pid, _ := e.CreateStarted(id, e.Bundle("c", []string{"sleep", "1000"}), "")
	if st := e.State(id); st.Status != "running" {
		t.Fatalf("status %q, want running", st.Status)
	}
	e.ForceDelete(id, pid)
}

// kill --all reaches every process of the container, not only its init.
func TestKillAll(t *testing.T) {
	e := e2e.NewEnv(t)
	id := e.ID("all")
	// Children print when TERM reaches them; the init waits for them and
	// exits, so the container stops only if the signal reached them.
	b := e.Bundle("c", e2e.Sh(`
trap 'wait; echo init-done; exit 0' TERM
for n in 1 2; do
	sh -c "trap 'echo child$n-term; exit 0' TERM; echo child$n-ready; while true; do sleep 1; done" &
done
while true; do wait; done
`))
	pid, out := e.CreateStarted(id, b, "child1-ready")
	e.WaitOutput(out, "child2-ready")
	e.MustOK(e.RT("kill", "--all", id, "TERM"))
	e.WaitOutput(out, "child1-term")
	e.WaitOutput(out, "child2-term")
	e.WaitStatus(id, "stopped")
	e.WaitGone(pid)
	e.MustOK(e.RT("delete", id))
}

// Two containers at once: each runs, prints to its own stdio and is
// signalled on its own. Also covers list and both spellings of a signal
// other than a name without prefix (a number and SIGKILL).
func TestTwoContainersAndList(t *testing.T) {
	e := e2e.NewEnv(t)
	ids := []string{e.ID("alpha"), e.ID("beta")}
	pids := map[string]int{}
	outs := map[string]string{}
	bundles := map[string]string{}
	for _, id := range ids {
		bundles[id] = e.Bundle(id, e2e.Sh(`while true; do echo "name=$NAME"; sleep 1; done`), func(s *specs.Spec) {
			s.Process.Env = append(s.Process.Env, "NAME="+id)
		})
		pids[id], outs[id] = e.Create(id, bundles[id])
	}
	if pids[ids[0]] == pids[ids[1]] {
		t.Fatalf("both containers report pid %d", pids[ids[0]])
	}
	for _, id := range ids {
		e.MustOK(e.RT("start", id))
	}
	for _, id := range ids {
		e.WaitOutput(outs[id], "name="+id)
	}

	e.Step("list", func(e *e2e.Env) {
		t := e.T
		table := e.MustOK(e.RT("list")).Stdout
		for _, id := range ids {
			if !listTableHas(table, id, "running", pids[id]) {
				t.Errorf("list does not show %s running with pid %d:\n%s", id, pids[id], table)
			}
		}
		list := listJSON(e)
		for _, id := range ids {
			c, ok := list[id]
			if !ok {
				t.Errorf("list --format json lacks %s: %v", id, list)
				continue
			}
			if c.Status != "running" || c.Pid != pids[id] || c.Bundle != bundles[id] {
				t.Errorf("list --format json shows %+v, want running, pid %d, bundle %s", c, pids[id], bundles[id])
			}
		}
	})

	e.Step("killing one leaves the other running", func(e *e2e.Env) {
		// The first by number: the second must keep running and printing.
		e.MustOK(e.RT("kill", ids[0], "9"))
		e.WaitStatus(ids[0], "stopped")
		e.WaitGone(pids[ids[0]])
		if st := e.State(ids[1]); st.Status != "running" || !e2e.Alive(pids[ids[1]]) {
			e.T.Fatalf("killing %s stopped %s too (status %q)", ids[0], ids[1], st.Status)
		}
		before, _ := os.ReadFile(outs[ids[1]])
		e.Poll(func() bool { now, _ := os.ReadFile(outs[ids[1]]); return len(now) > len(before) },
			func() string { return ids[1] + " stopped printing after " + ids[0] + " was killed" })
	})

	e.MustOK(e.RT("kill", ids[1], "SIGKILL"))
	e.WaitStatus(ids[1], "stopped")
	e.WaitGone(pids[ids[1]])

	e.Step("stdio apart", func(e *e2e.Env) {
		for i, id := range ids {
			data, _ := os.ReadFile(outs[id])
			if other := ids[1-i]; strings.Contains(string(data), "name="+other) {
				e.T.Errorf("%s's stdout has %s's output: %q", id, other, data)
			}
		}
	})

	e.Step("list after kill and delete", func(e *e2e.Env) {
		list := listJSON(e)
		for _, id := range ids {
			if list[id].Status != "stopped" {
				e.T.Errorf("list --format json shows %s as %q after kill, want stopped", id, list[id].Status)
			}
			e.MustOK(e.RT("delete", id))
		}
		if list := listJSON(e); len(list) != 0 {
			e.T.Errorf("list after deleting everything: %v", list)
		}
	})
}

type listEntry struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Pid    int    `json:"pid"`
	Bundle string `json:"bundle"`
}

// listJSON runs `list --format json`, a JSON array (or null when empty).
func listJSON(e *e2e.Env) map[string]listEntry {
	e.T.Helper()
	r := e.MustOK(e.RT("list", "--format", "json"))
	var list []listEntry
	if s := strings.TrimSpace(r.Stdout); s != "" {
		if err := json.Unmarshal([]byte(s), &list); err != nil {
			e.T.Fatalf("list --format json is not a JSON array: %v\n%s", err, r.Stdout)
		}
	}
	m := map[string]listEntry{}
	for _, c := range list {
		m[c.ID] = c
	}
	return m
}

// listTableHas finds the row of id in `list` output with status and pid.
func listTableHas(table, id, status string, pid int) bool {
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == id {
			return slices.Contains(f, status) && slices.Contains(f, strconv.Itoa(pid))
		}
	}
	return false
}

// kill right after start reaches the program's handler, and the container
// is stopped, ready for delete, within moments of its process's exit (the
// OCI validation program killsig): the shell's trap is set a hundred
// milliseconds or more after start under emulation, and its init would
// drop a signal that came first; skiff's shim then tears the VM down for
// seconds, during which the container must already be stopped.
func TestKillRightAfterStart(t *testing.T) {
	e := e2e.NewEnv(t)
	for _, sig := range []string{"TERM", "USR1"} {
		e.Step(sig, func(e *e2e.Env) {
			t := e.T
			id := e.ID("killnow-" + strings.ToLower(sig))
			// The shell is its namespace's init: a signal that lands
			// before the trap is set is dropped, and one that lands
			// between the trap and the wait leaves it waiting out the
			// sleep. runc's shell is in its wait within a millisecond.
			b := e.Bundle("killnow-"+strings.ToLower(sig), e2e.Sh(`trap "echo got-`+sig+`; exit 0" `+sig+`; sleep 10 & wait $!`))
			pid, out := e.Create(id, b)
			e.MustOK(e.RT("start", id))
			e.MustOK(e.RT("kill", id, sig))
			killed := time.Now()
			for e.State(id).Status != "stopped" {
				if time.Since(killed) > 5*time.Second {
					data, _ := os.ReadFile(out)
					t.Fatalf("still %s 5s after kill %s right after start (output %q): the signal was lost, or the stop not reported", e.State(id).Status, sig, data)
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Logf("stopped %v after kill (host process alive then: %v)", time.Since(killed).Round(time.Millisecond), e2e.Alive(pid))
			e.MustOK(e.RT("delete", id))
			if data, _ := os.ReadFile(out); !strings.Contains(string(data), "got-"+sig) {
				t.Errorf("output %q, want got-%s from the trap", data, sig)
			}
			e.AssertNothingFor(id)
		})
	}
}
