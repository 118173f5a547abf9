package tests

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// update changes the limits of the running container's guest cgroup (the
// container reads them back), events --stats reports its usage, and
// events without --stats streams until the container stops.
func TestUpdateAndEvents(t *testing.T) {
	e2e.SkiffOnly(t) // the guest's cgroup paths
	e := e2e.NewEnv(t)
	id := e.ID("upd")
	b := e.Bundle("upd", e2e.Sh(`sleep 1000 & while read x; do :; done; wait`))
	e.CreateStarted(id, b, "")
	cg := "/sys/fs/cgroup" // the container's own cgroup (its cgroup namespace)
	read := func(e *e2e.Env, file string) string {
		e.T.Helper()
		return strings.TrimSpace(e.MustOK(e.RT("exec", id, "cat", cg+"/"+file)).Stdout)
	}

	e.Step("update flags", func(e *e2e.Env) {
		t := e.T
		e.MustOK(e.RT("update", "--memory", "100m", "--pids-limit", "50", "--cpu-quota", "50000", "--cpu-period", "100000", id))
		if got := read(e, "memory.max"); got != "104857600" {
			t.Errorf("memory.max after update --memory 100m = %q, want 104857600", got)
		}
		if got := read(e, "pids.max"); got != "50" {
			t.Errorf("pids.max after update --pids-limit 50 = %q, want 50", got)
		}
		if got := read(e, "cpu.max"); got != "50000 100000" {
			t.Errorf("cpu.max after update = %q, want \"50000 100000\"", got)
		}
		// Only the period: the quota stays. -1: unlimited.
		e.MustOK(e.RT("update", "--cpu-period", "200000", "--memory", "-1", id))
		if got := read(e, "cpu.max"); got != "50000 200000" {
			t.Errorf("cpu.max after update --cpu-period = %q, want \"50000 200000\"", got)
		}
		if got := read(e, "memory.max"); got != "max" {
			t.Errorf("memory.max after update --memory -1 = %q, want max", got)
		}
	})

	e.Step("update from a resources file", func(e *e2e.Env) {
		t := e.T
		// As podman and containerd pass it.
		res := e.WriteFile("res.json", `{"memory":{"limit":67108864},"pids":{"limit":-1}}`)
		e.MustOK(e.RT("update", "-r", res, id))
		if got := read(e, "memory.max"); got != "67108864" {
			t.Errorf("memory.max after update -r = %q, want 67108864", got)
		}
		if got := read(e, "pids.max"); got != "max" {
			t.Errorf("pids.max after pids.limit -1 = %q, want max", got)
		}
	})

	e.Step("update refusals", func(e *e2e.Env) {
		e.MustFail(e.RT("update", "--memory", "lots", id))
		e.MustFail(e.RT("update", "--cpuset-cpus", "0", id))
		e.MustFail(e.RT("update", "-r", e.WriteFile("bad-res.json", `{"memory":`), id))
		e.MustFail(e.RT("update", "--memory", "1m", "nosuch"))
	})

	e.Step("events --stats", func(e *e2e.Env) {
		t := e.T
		// events --stats: one stats object.
		r := e.MustOK(e.RT("events", "--stats", id))
		var ev struct {
			Type string `json:"type"`
			ID   string `json:"id"`
			Data struct {
				CPU struct {
					Usage struct {
						Total uint64 `json:"total"`
					} `json:"usage"`
				} `json:"cpu"`
				Memory struct {
					Usage struct {
						Usage uint64 `json:"usage"`
						Limit uint64 `json:"limit"`
					} `json:"usage"`
				} `json:"memory"`
				Pids struct {
					Current uint64 `json:"current"`
				} `json:"pids"`
				Blkio json.RawMessage `json:"blkio"`
			} `json:"data"`
		}
		if strings.Count(strings.TrimSpace(r.Stdout), "\n") != 0 {
			t.Errorf("events --stats printed more than one line: %q", r.Stdout)
		}
		if err := json.Unmarshal([]byte(r.Stdout), &ev); err != nil {
			t.Fatalf("events --stats printed invalid JSON: %v\n%s", err, r.Stdout)
		}
		if ev.Type != "stats" || ev.ID != id {
			t.Errorf("events --stats: type %q id %q, want stats and %s", ev.Type, ev.ID, id)
		}
		if ev.Data.Memory.Usage.Usage == 0 || ev.Data.Pids.Current < 1 || ev.Data.CPU.Usage.Total == 0 {
			t.Errorf("events --stats: want memory usage, cpu usage > 0 and pids.current >= 1, got %s", r.Stdout)
		}
		if ev.Data.Memory.Usage.Limit != 67108864 {
			t.Errorf("events --stats: memory limit %d, want the updated 67108864", ev.Data.Memory.Usage.Limit)
		}
	})

	e.Step("events streams until the container stops", func(e *e2e.Env) {
		t := e.T
		// events streams until the container stops, then exits.
		go func() {
			time.Sleep(2 * time.Second)
			e.RT("kill", id, "KILL")
		}()
		start := time.Now()
		r := e.MustOK(e.RT("events", "--interval", "300ms", id))
		if n := strings.Count(r.Stdout, `"type":"stats"`); n < 2 {
			t.Errorf("events --interval 300ms over ~2 s printed %d stats lines, want several: %q", n, r.Stdout)
		}
		if time.Since(start) > 20*time.Second {
			t.Errorf("events took %v to notice the container stopped", time.Since(start))
		}
	})

	e.WaitStatus(id, "stopped")
	e.MustFail(e.RT("events", "--stats", id))
	e.MustFail(e.RT("update", "--memory", "1m", id))
	e.MustOK(e.RT("delete", id))
}
