package tests

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// ps lists the container's processes, exec'd ones included; pause stops
// them all and `state` says paused; resume lets them go on; a paused
// container can be killed. One container goes through it all.
func TestPsPauseResume(t *testing.T) {
	e := e2e.NewEnv(t)
	id := e.ID("p")
	b := e.Bundle("p", e2e.Sh(`sleep 1000 & n=0; while true; do n=$((n+1)); echo "tick=$n"; sleep 0.2; done`))
	pid, out := e.CreateStarted(id, b, "tick=2")
	// Detached, its stdio stay with the shim: files, not pipes we wait on.
	r, _ := e.RTFiles("exec", "--detach", id, "sleep", "777")
	e.MustOK(r)

	e.Step("ps", func(e *e2e.Env) {
		// Table and json. The guest's ps shows guest PIDs.
		t := e.T
		var table string
		e.Poll(func() bool { table = e.MustOK(e.RT("ps", id)).Stdout; return strings.Contains(table, "sleep 777") },
			func() string { return "ps never showed the exec'd sleep 777:\n" + table })
		if !strings.HasPrefix(table, "UID") || !strings.Contains(table, "PID") {
			t.Errorf("ps table has no header: %q", table)
		}
		for _, want := range []string{"sleep 1000", "sh -c"} {
			if !strings.Contains(table, want) {
				t.Errorf("ps does not show %q:\n%s", want, table)
			}
		}
		var pids []int
		r := e.MustOK(e.RT("ps", "--format", "json", id))
		if err := json.Unmarshal([]byte(r.Stdout), &pids); err != nil || len(pids) < 3 {
			t.Errorf("ps --format json: want an array of at least 3 PIDs, got %q (%v)", r.Stdout, err)
		}
		e.MustFail(e.RT("ps", "--format", "yaml", id))
	})

	var paused []byte
	e.Step("pause", func(e *e2e.Env) {
		// Nothing runs, and state says so.
		t := e.T
		e.MustFail(e.RT("resume", id))
		e.MustOK(e.RT("pause", id))
		if st := e.State(id); st.Status != "paused" || st.Pid != pid {
			t.Errorf("after pause: status %q pid %d, want paused with pid %d", st.Status, st.Pid, pid)
		}
		time.Sleep(500 * time.Millisecond) // output already in flight
		before, _ := os.ReadFile(out)
		time.Sleep(2 * time.Second)
		paused, _ = os.ReadFile(out)
		if len(paused) != len(before) {
			t.Errorf("the container kept printing while paused: %q", paused[len(before):])
		}
		e.MustFail(e.RT("pause", id))
		if msg := e.MustFail(e.RT("exec", id, "true")); !strings.Contains(msg, "paused") {
			t.Errorf("exec into a paused container says %q, want it to say it is paused", msg)
		}
		if msg := e.MustFail(e.RT("delete", id)); !strings.Contains(msg, "paused") {
			t.Errorf("delete of a paused container says %q, want it to say it is paused", msg)
		}
	})

	e.Step("resume", func(e *e2e.Env) {
		e.MustOK(e.RT("resume", id))
		if st := e.State(id); st.Status != "running" {
			e.T.Errorf("after resume: status %q, want running", st.Status)
		}
		e.WaitOutput(out, string(paused)+"tick=")
	})

	e.Step("kill while paused", func(e *e2e.Env) {
		e.MustOK(e.RT("pause", id))
		e.MustOK(e.RT("kill", id, "KILL"))
		e.WaitStatus(id, "stopped")
		e.WaitGone(pid)
		e.MustFail(e.RT("pause", id))
		e.MustFail(e.RT("resume", id))
		// As runc: a stopped container has no processes to list.
		var pids []int
		r := e.MustOK(e.RT("ps", "--format", "json", id))
		if err := json.Unmarshal([]byte(r.Stdout), &pids); err != nil || len(pids) != 0 {
			e.T.Errorf("ps of a stopped container: %q, want no PIDs", r.Stdout)
		}
	})
	e.MustOK(e.RT("delete", id))
}
