package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go/features"
)

// features prints the OCI features document, and it is honest: the hooks
// skiff runs, the mount options it honours, no seccomp claimed.
func TestFeatures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.mustOK(e.rt("features"))
	var f features.Features
	if err := json.Unmarshal([]byte(r.stdout), &f); err != nil {
		t.Fatalf("features printed invalid JSON: %v\n%s", err, r.stdout)
	}
	if f.OCIVersionMin == "" || f.OCIVersionMax == "" {
		t.Errorf("features: want ociVersionMin and ociVersionMax, got %q and %q", f.OCIVersionMin, f.OCIVersionMax)
	}
	for _, h := range []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"} {
		if !slices.Contains(f.Hooks, h) {
			t.Errorf("features: hooks %v lack %s", f.Hooks, h)
		}
	}
	for _, o := range []string{"ro", "nosuid", "rbind", "rprivate", "tmpcopyup"} {
		if !slices.Contains(f.MountOptions, o) {
			t.Errorf("features: mountOptions %v lack %s", f.MountOptions, o)
		}
	}
	if f.Linux == nil || f.Linux.Cgroup == nil || f.Linux.Cgroup.V2 == nil || !*f.Linux.Cgroup.V2 {
		t.Errorf("features: want linux.cgroup.v2 true, got %+v", f.Linux)
	} else {
		if f.Linux.Seccomp != nil {
			t.Errorf("features: seccomp is not applied, yet the document describes it: %+v", f.Linux.Seccomp)
		}
		if !slices.Contains(f.Linux.Namespaces, "pid") || !slices.Contains(f.Linux.Capabilities, "CAP_SYS_ADMIN") {
			t.Errorf("features: namespaces %v / capabilities %v incomplete", f.Linux.Namespaces, f.Linux.Capabilities)
		}
	}
	if isSkiff && f.Annotations["io.github.skiff.vm"] != "qemu" {
		t.Errorf("features: annotations %v lack io.github.skiff.vm=qemu", f.Annotations)
	}
	e.mustFail(e.rt("features", "extra"))
}

// update changes the limits of the running container's guest cgroup (the
// container reads them back), events --stats reports its usage, and
// events without --stats streams until the container stops.
func TestUpdateAndEvents(t *testing.T) {
	skiffOnly(t) // the guest's cgroup paths
	t.Parallel()
	e := newEnv(t)
	id := e.id("upd")
	b := e.bundle("upd", sh(`sleep 1000 & while read x; do :; done; wait`))
	e.create(id, b)
	e.mustOK(e.rt("start", id))
	cg := "/sys/fs/cgroup/skiff/" + id
	read := func(file string) string {
		t.Helper()
		return strings.TrimSpace(e.mustOK(e.rt("exec", id, "cat", cg+"/"+file)).stdout)
	}

	e.mustOK(e.rt("update", "--memory", "100m", "--pids-limit", "50", "--cpu-quota", "50000", "--cpu-period", "100000", id))
	if got := read("memory.max"); got != "104857600" {
		t.Errorf("memory.max after update --memory 100m = %q, want 104857600", got)
	}
	if got := read("pids.max"); got != "50" {
		t.Errorf("pids.max after update --pids-limit 50 = %q, want 50", got)
	}
	if got := read("cpu.max"); got != "50000 100000" {
		t.Errorf("cpu.max after update = %q, want \"50000 100000\"", got)
	}
	// Only the period: the quota stays. -1: unlimited.
	e.mustOK(e.rt("update", "--cpu-period", "200000", "--memory", "-1", id))
	if got := read("cpu.max"); got != "50000 200000" {
		t.Errorf("cpu.max after update --cpu-period = %q, want \"50000 200000\"", got)
	}
	if got := read("memory.max"); got != "max" {
		t.Errorf("memory.max after update --memory -1 = %q, want max", got)
	}
	// From a resources file, as podman and containerd pass it.
	res := filepath.Join(e.dir, "res.json")
	os.WriteFile(res, []byte(`{"memory":{"limit":67108864},"pids":{"limit":-1}}`), 0o644)
	e.mustOK(e.rt("update", "-r", res, id))
	if got := read("memory.max"); got != "67108864" {
		t.Errorf("memory.max after update -r = %q, want 67108864", got)
	}
	if got := read("pids.max"); got != "max" {
		t.Errorf("pids.max after pids.limit -1 = %q, want max", got)
	}
	e.mustFail(e.rt("update", "--memory", "lots", id))
	e.mustFail(e.rt("update", "--cpuset-cpus", "0", id))
	os.WriteFile(res, []byte(`{"memory":`), 0o644)
	e.mustFail(e.rt("update", "-r", res, id))
	e.mustFail(e.rt("update", "--memory", "1m", "nosuch"))

	// events --stats: one stats object.
	r := e.mustOK(e.rt("events", "--stats", id))
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
	if strings.Count(strings.TrimSpace(r.stdout), "\n") != 0 {
		t.Errorf("events --stats printed more than one line: %q", r.stdout)
	}
	if err := json.Unmarshal([]byte(r.stdout), &ev); err != nil {
		t.Fatalf("events --stats printed invalid JSON: %v\n%s", err, r.stdout)
	}
	if ev.Type != "stats" || ev.ID != id {
		t.Errorf("events --stats: type %q id %q, want stats and %s", ev.Type, ev.ID, id)
	}
	if ev.Data.Memory.Usage.Usage == 0 || ev.Data.Pids.Current < 1 || ev.Data.CPU.Usage.Total == 0 {
		t.Errorf("events --stats: want memory usage, cpu usage > 0 and pids.current >= 1, got %s", r.stdout)
	}
	if ev.Data.Memory.Usage.Limit != 67108864 {
		t.Errorf("events --stats: memory limit %d, want the updated 67108864", ev.Data.Memory.Usage.Limit)
	}

	// events streams until the container stops, then exits.
	go func() {
		time.Sleep(2 * time.Second)
		e.rt("kill", id, "KILL")
	}()
	start := time.Now()
	r = e.mustOK(e.rt("events", "--interval", "300ms", id))
	if n := strings.Count(r.stdout, `"type":"stats"`); n < 2 {
		t.Errorf("events --interval 300ms over ~2 s printed %d stats lines, want several: %q", n, r.stdout)
	}
	if time.Since(start) > 20*time.Second {
		t.Errorf("events took %v to notice the container stopped", time.Since(start))
	}
	e.waitStatus(id, "stopped")
	e.mustFail(e.rt("events", "--stats", id))
	e.mustFail(e.rt("update", "--memory", "1m", id))
	e.mustOK(e.rt("delete", id))
}
