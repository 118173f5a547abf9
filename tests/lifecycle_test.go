package tests

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// An init process in a PID namespace ignores signals it has no handler
// for, so the long-running containers trap TERM and say so.
const termLoop = `trap "echo got-term; exit 0" TERM; echo started; while true; do sleep 1; done`

// The split lifecycle podman and CRI-O use: create, state, start, kill,
// delete, with the refusals a user meets on the way.
func TestCreateStartKillDelete(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.id("life")
	b := e.bundle("c", sh(termLoop), func(s *specs.Spec) {
		s.Annotations = map[string]string{"org.skiff.e2e": "life"}
	})

	pid, out := e.create(id, b)
	st := e.state(id)
	if st.Status != "created" {
		t.Errorf("status after create %q, want created", st.Status)
	}
	if st.Pid != pid {
		t.Errorf("state pid %d, pid file %d: they must be the same process", st.Pid, pid)
	}
	if !alive(pid) {
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

	e.mustOK(e.rt("start", id))
	e.waitOutput(out, "started")
	st = e.state(id)
	if st.Status != "running" || st.Pid != pid {
		t.Errorf("after start: status %q pid %d, want running with pid %d", st.Status, st.Pid, pid)
	}

	// Refusals that must leave the running container alone.
	e.mustFail(e.rt("start", id))
	e.mustFail(e.rt("delete", id))
	e.mustFail(e.rt("kill", id, "SIGFOO"))
	if st := e.state(id); st.Status != "running" || !alive(pid) {
		t.Fatalf("after refused start/delete/kill SIGFOO: status %q, process alive %v; want it still running", st.Status, alive(pid))
	}

	e.mustOK(e.rt("kill", id, "TERM"))
	e.waitStatus(id, "stopped")
	e.waitGone(pid)
	e.waitOutput(out, "got-term")

	e.mustOK(e.rt("delete", id))
	msg := e.mustFail(e.rt("state", id))
	if !strings.Contains(msg, "does not exist") {
		t.Errorf("state of a deleted container says %q, want it to say the container does not exist", msg)
	}
}

// `run --detach` returns once the container runs; `kill` with no signal
// sends TERM.
func TestRunDetach(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.id("det")
	b := e.bundle("c", sh(termLoop))
	pidFile := e.dir + "/det.pid"
	r, out := e.rtFiles("run", "--detach", "--pid-file", pidFile, "--bundle", b, id)
	e.mustOK(r)
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("run --detach wrote no pid file: %v", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	e.track(pid)
	st := e.state(id)
	if st.Status != "running" || st.Pid != pid {
		t.Errorf("after run --detach: status %q pid %d, want running with the pid file's %d", st.Status, st.Pid, pid)
	}
	e.waitOutput(out, "started")

	e.mustOK(e.rt("kill", id))
	e.waitStatus(id, "stopped")
	e.waitGone(pid)
	e.waitOutput(out, "got-term")
	e.mustOK(e.rt("delete", id))
}

// delete --force ends a running container and removes it.
func TestDeleteForceRunning(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.id("force")
	pid, _ := e.create(id, e.bundle("c", []string{"sleep", "1000"}))
	e.mustOK(e.rt("start", id))
	if st := e.state(id); st.Status != "running" {
		t.Fatalf("status %q, want running", st.Status)
	}
	e.mustOK(e.rt("delete", "--force", id))
	e.waitGone(pid)
	e.mustFail(e.rt("state", id))
}

// kill --all reaches every process of the container, not only its init.
func TestKillAll(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.id("all")
	// Children print when TERM reaches them; the init waits for them and
	// exits, so the container stops only if the signal reached them.
	b := e.bundle("c", sh(`
trap 'wait; echo init-done; exit 0' TERM
for n in 1 2; do
	sh -c "trap 'echo child$n-term; exit 0' TERM; echo child$n-ready; while true; do sleep 1; done" &
done
while true; do wait; done
`))
	pid, out := e.create(id, b)
	e.mustOK(e.rt("start", id))
	e.waitOutput(out, "child1-ready")
	e.waitOutput(out, "child2-ready")
	e.mustOK(e.rt("kill", "--all", id, "TERM"))
	e.waitOutput(out, "child1-term")
	e.waitOutput(out, "child2-term")
	e.waitStatus(id, "stopped")
	e.waitGone(pid)
	e.mustOK(e.rt("delete", id))
}

// Two containers at once: each runs, prints to its own stdio and is
// signalled on its own. Also covers list and both spellings of a signal
// other than a name without prefix (a number and SIGKILL).
func TestTwoContainersAndList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ids := []string{e.id("alpha"), e.id("beta")}
	pids := map[string]int{}
	outs := map[string]string{}
	bundles := map[string]string{}
	for _, id := range ids {
		bundles[id] = e.bundle(id, sh(`while true; do echo "name=$NAME"; sleep 1; done`), func(s *specs.Spec) {
			s.Process.Env = append(s.Process.Env, "NAME="+id)
		})
		pids[id], outs[id] = e.create(id, bundles[id])
	}
	if pids[ids[0]] == pids[ids[1]] {
		t.Fatalf("both containers report pid %d", pids[ids[0]])
	}
	for _, id := range ids {
		e.mustOK(e.rt("start", id))
	}
	for _, id := range ids {
		e.waitOutput(outs[id], "name="+id)
	}

	table := e.mustOK(e.rt("list")).stdout
	for _, id := range ids {
		if !listTableHas(table, id, "running", pids[id]) {
			t.Errorf("list does not show %s running with pid %d:\n%s", id, pids[id], table)
		}
	}
	list := e.listJSON()
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

	// Kill the first by number: the second must keep running and printing.
	e.mustOK(e.rt("kill", ids[0], "9"))
	e.waitStatus(ids[0], "stopped")
	e.waitGone(pids[ids[0]])
	if st := e.state(ids[1]); st.Status != "running" || !alive(pids[ids[1]]) {
		t.Fatalf("killing %s stopped %s too (status %q)", ids[0], ids[1], st.Status)
	}
	before, _ := os.ReadFile(outs[ids[1]])
	deadline := time.Now().Add(stopTimeout)
	for {
		now, _ := os.ReadFile(outs[ids[1]])
		if len(now) > len(before) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s stopped printing after %s was killed", ids[1], ids[0])
		}
		time.Sleep(200 * time.Millisecond)
	}

	e.mustOK(e.rt("kill", ids[1], "SIGKILL"))
	e.waitStatus(ids[1], "stopped")
	e.waitGone(pids[ids[1]])

	for i, id := range ids {
		data, _ := os.ReadFile(outs[id])
		if other := ids[1-i]; strings.Contains(string(data), "name="+other) {
			t.Errorf("%s's stdout has %s's output: %q", id, other, data)
		}
	}
	list = e.listJSON()
	for _, id := range ids {
		if list[id].Status != "stopped" {
			t.Errorf("list --format json shows %s as %q after kill, want stopped", id, list[id].Status)
		}
		e.mustOK(e.rt("delete", id))
	}
	if list := e.listJSON(); len(list) != 0 {
		t.Errorf("list after deleting everything: %v", list)
	}
}

type listEntry struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Pid    int    `json:"pid"`
	Bundle string `json:"bundle"`
}

// listJSON runs `list --format json`, a JSON array (or null when empty).
func (e *env) listJSON() map[string]listEntry {
	e.t.Helper()
	r := e.mustOK(e.rt("list", "--format", "json"))
	var list []listEntry
	if s := strings.TrimSpace(r.stdout); s != "" {
		if err := json.Unmarshal([]byte(s), &list); err != nil {
			e.t.Fatalf("list --format json is not a JSON array: %v\n%s", err, r.stdout)
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
			return contains(f, status) && contains(f, strconv.Itoa(pid))
		}
	}
	return false
}
