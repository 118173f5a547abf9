package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// assertNothingFor checks that a refused verb left no trace of id.
func (e *env) assertNothingFor(id string) {
	e.t.Helper()
	if id != "" {
		if _, err := os.Lstat(filepath.Join(e.root, id)); err == nil {
			e.t.Errorf("refused container %q left %s", id, filepath.Join(e.root, id))
		}
	}
	entries, _ := os.ReadDir(e.root)
	for _, ent := range entries {
		e.t.Errorf("refused container %q left %s in --root", id, ent.Name())
	}
	e.assertNoLeaks()
}

// Broken bundles are refused by create and run with a message, and leave
// nothing behind.
func TestBadBundle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	missing := filepath.Join(e.dir, "no-such-bundle")

	malformed := filepath.Join(e.dir, "malformed")
	if err := os.Mkdir(malformed, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(malformed, "config.json"), []byte(`{"ociVersion": "1.0.2", "process": {`), 0o644); err != nil {
		t.Fatal(err)
	}

	noRootfs := e.bundle("norootfs", []string{"true"}, func(s *specs.Spec) {
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
			id := e.id("bad")
			r, _ := e.rtFiles(verb, "--bundle", c.bundle, id)
			msg := e.mustFail(r)
			// runc only says "unexpected EOF" for malformed JSON; skiff must
			// say which file is wrong.
			if c.mention == "config.json" && !isSkiff {
				c.mention = ""
			}
			if !strings.Contains(msg, c.mention) {
				t.Errorf("%s: %s: message %q does not name %s", c.name, verb, msg, c.mention)
			}
			e.assertNothingFor(id)
		}
	}
}

// Container IDs that are not plain names are refused before anything is
// written: no directory in or next to --root.
func TestBadIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.bundle("c", []string{"true"})
	for _, id := range []string{"a/b", "..", "../x", "", "."} {
		r, _ := e.rtFiles("create", "--bundle", b, id)
		e.mustFail(r)
		e.assertNothingFor("")
	}
	// "-x" on its own is an unknown flag to any CLI parser.
	r, _ := e.rtFiles("create", "--bundle", b, "-x")
	e.mustFail(r)
	e.assertNothingFor("")
	// After "--" it is an ID; runc accepts it, skiff's ID rule does not.
	if isSkiff {
		r, _ := e.rtFiles("create", "--bundle", b, "--", "-x")
		e.mustFail(r)
		e.assertNothingFor("-x")
	}
	entries, _ := os.ReadDir(e.dir)
	for _, ent := range entries {
		if name := ent.Name(); name != "r" && name != "b-c" && !strings.HasPrefix(name, "std") {
			t.Errorf("a refused ID left %s next to --root", filepath.Join(e.dir, name))
		}
	}
}

// Every verb on an unknown container says that it does not exist.
func TestUnknownID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.id("ghost")
	for _, args := range [][]string{
		{"start", id}, {"state", id}, {"kill", id}, {"kill", id, "KILL"}, {"delete", id},
	} {
		msg := e.mustFail(e.rt(args...))
		if !strings.Contains(msg, "does not exist") {
			t.Errorf("%s: message %q, want it to say the container does not exist", strings.Join(args, " "), msg)
		}
	}
	e.assertNothingFor(id)
}

// A second create with an ID in use fails and leaves the first intact.
func TestDuplicateID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.id("dup")
	first := e.bundle("first", []string{"sleep", "1000"})
	pid, _ := e.create(id, first)

	second := e.bundle("second", []string{"sleep", "1000"})
	r, _ := e.rtFiles("create", "--bundle", second, "--pid-file", filepath.Join(e.dir, "second.pid"), id)
	e.mustFail(r)

	st := e.state(id)
	if st.Status != "created" || st.Pid != pid || st.Bundle != first || !alive(pid) {
		t.Errorf("after a duplicate create: %+v (alive %v), want created, pid %d, bundle %s", st, alive(pid), pid, first)
	}
	e.mustOK(e.rt("delete", "--force", id))
	e.waitGone(pid)
	e.mustFail(e.rt("state", id))
}

// --log with --log-format json receives the error as a JSON line with
// level "error", which containerd reports (it drops stderr); text format
// works too. --debug and --systemd-cgroup are accepted.
func TestLogFile(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.id("ghost")
	jsonLog := filepath.Join(e.dir, "log.json")
	e.mustFail(e.rt("--log", jsonLog, "--log-format", "json", "state", id))
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

	textLog := filepath.Join(e.dir, "log.txt")
	e.mustFail(e.rt("--log", textLog, "--log-format", "text", "kill", id))
	if data, _ := os.ReadFile(textLog); !strings.Contains(string(data), "does not exist") {
		t.Errorf("text log lacks the error: %q", data)
	}

	e.mustOK(e.rt("--debug", "--systemd-cgroup", "list"))
}
