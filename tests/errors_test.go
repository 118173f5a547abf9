package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// Broken bundles are refused by create and run with a message, and leave
// nothing behind.
func TestBadBundle(t *testing.T) {
	e := e2e.NewEnv(t)

	missing := filepath.Join(e.Dir, "no-such-bundle")

	malformed := filepath.Dir(e.WriteFile("malformed/config.json", `{"ociVersion": "1.0.2", "process": {`))

	noRootfs := e.Bundle("norootfs", []string{"true"}, func(s *specs.Spec) {
		s.Root = &specs.Root{Path: "rootfs"} // relative to the bundle, absent
	})

	cases := []struct {
		name, bundle string
		mention      string // what the message must name; "" if runc's names nothing
	}{
		{"missing bundle dir", missing, missing},
		{"malformed config.json", malformed, "config.json"},
		{"missing rootfs", noRootfs, filepath.Join(noRootfs, "rootfs")},
	}
	for _, c := range cases {
		for _, verb := range []string{"create", "run"} {
			id := e.ID("bad")
			r, _ := e.RTFiles(verb, "--bundle", c.bundle, id)
			msg := e.MustFail(r)
			// runc only says "unexpected EOF" for malformed JSON; skiff must
			// say which file is wrong.
			if c.mention == "config.json" && !e2e.IsSkiff() {
				c.mention = ""
			}
			if !strings.Contains(msg, c.mention) {
				t.Errorf("%s: %s: message %q does not name %s", c.name, verb, msg, c.mention)
			}
			e.AssertNothingFor(id)
		}
	}
}

// Container IDs that are not plain names are refused before anything is
// written: no directory in or next to --root.
func TestBadIDs(t *testing.T) {
	e := e2e.NewEnv(t)
	b := e.Bundle("c", []string{"true"})
	for _, id := range []string{"a/b", "..", "../x", "", "."} {
		r, _ := e.RTFiles("create", "--bundle", b, id)
		e.MustFail(r)
		e.AssertNothingFor("")
	}
	// "-x" on its own is an unknown flag to any CLI parser.
	r, _ := e.RTFiles("create", "--bundle", b, "-x")
	e.MustFail(r)
	e.AssertNothingFor("")
	// After "--" it is an ID; runc accepts it, skiff's ID rule does not.
	if e2e.IsSkiff() {
		r, _ := e.RTFiles("create", "--bundle", b, "--", "-x")
		e.MustFail(r)
		e.AssertNothingFor("-x")
	}
	entries, _ := os.ReadDir(e.Dir)
	for _, ent := range entries {
		if name := ent.Name(); name != "r" && name != "b-c" && !strings.HasPrefix(name, "std") {
			t.Errorf("a refused ID left %s next to --root", filepath.Join(e.Dir, name))
		}
	}
}

// Every verb on an unknown container says that it does not exist.
func TestUnknownID(t *testing.T) {
	e := e2e.NewEnv(t)
	id := e.ID("ghost")
	for _, args := range [][]string{
		{"start", id}, {"state", id}, {"kill", id}, {"kill", id, "KILL"}, {"delete", id},
	} {
		msg := e.MustFail(e.RT(args...))
		if !strings.Contains(msg, "does not exist") {
			t.Errorf("%s: message %q, want it to say the container does not exist", strings.Join(args, " "), msg)
		}
	}
	e.AssertNothingFor(id)
}

// A second create with an ID in use fails and leaves the first intact.
func TestDuplicateID(t *testing.T) {
	e := e2e.NewEnv(t)
	id := e.ID("dup")
	first := e.Bundle("first", []string{"sleep", "1000"})
	pid, _ := e.Create(id, first)

	second := e.Bundle("second", []string{"sleep", "1000"})
	r, _ := e.RTFiles("create", "--bundle", second, "--pid-file", filepath.Join(e.Dir, "second.pid"), id)
	e.MustFail(r)

	st := e.State(id)
	if st.Status != "created" || st.Pid != pid || st.Bundle != first || !e2e.Alive(pid) {
		t.Errorf("after a duplicate create: %+v (alive %v), want created, pid %d, bundle %s", st, e2e.Alive(pid), pid, first)
	}
	e.ForceDelete(id, pid)
}

// --log with --log-format json receives the error as a JSON line with
// level "error", which containerd reports (it drops stderr); text format
// works too. --debug and --systemd-cgroup are accepted.
func TestLogFile(t *testing.T) {
	e := e2e.NewEnv(t)
	id := e.ID("ghost")
	jsonLog := filepath.Join(e.Dir, "log.json")
	e.MustFail(e.RT("--log", jsonLog, "--log-format", "json", "state", id))
	data, err := os.ReadFile(jsonLog)
	if err != nil {
		t.Fatalf("--log file not written: %v", err)
	}
	found := false
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Errorf("--log-format json wrote a line that is not JSON: %q", line)
			continue
		}
		if msg, _ := entry["msg"].(string); entry["level"] == "error" && strings.Contains(msg, "does not exist") {
			found = true
		}
	}
	if !found {
		t.Errorf("no {\"level\":\"error\"} line saying the container does not exist in the log:\n%s", data)
	}

	textLog := filepath.Join(e.Dir, "log.txt")
	e.MustFail(e.RT("--log", textLog, "--log-format", "text", "kill", id))
	if data, _ := os.ReadFile(textLog); !strings.Contains(string(data), "does not exist") {
		t.Errorf("text log lacks the error: %q", data)
	}

	e.MustOK(e.RT("--debug", "--systemd-cgroup", "list"))
}

// A broken --config is refused with a message before any VM starts.
func TestBadConfig(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	b := e.Bundle("c", []string{"true"})
	cases := []struct {
		name, toml, mention string
	}{
		{"malformed", "accel = [\n", ""},
		{"missing kernel", "[hypervisor]\nkernel = \"/nonexistent/vmlinux\"\n", "/nonexistent/vmlinux"},
	}
	for i, c := range cases {
		cfg := e.WriteFile(c.name+".toml", c.toml)
		id := e.ID("cfg") + "-" + string(rune('a'+i))
		r, _ := e.RTFiles("--config", cfg, "run", "--bundle", b, id)
		msg := e.MustFail(r)
		if !strings.Contains(msg, c.mention) {
			t.Errorf("%s config: message %q does not name %s", c.name, msg, c.mention)
		}
		if c.mention == "" && !strings.Contains(msg, cfg) && !strings.Contains(msg, "toml") && !strings.Contains(msg, "config") {
			t.Errorf("%s config: message %q does not say the configuration is at fault", c.name, msg)
		}
		e.AssertNothingFor(id)
	}
}
