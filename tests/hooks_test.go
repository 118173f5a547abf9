package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// hookTo is a hook that appends "<name> <state JSON>" to log.
func hookTo(log, name string) specs.Hook {
	return specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", fmt.Sprintf(`printf '%%s ' %s >> %s; cat >> %s; echo >> %s`, name, log, log, log)}}
}

// OCI hooks run on the host at the runtime spec's points, in order, with
// the container's state on stdin. (skiff runs all of them on the host; runc
// runs startContainer inside the container, where this log is not.)
func TestHooksRunInOrderWithState(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	log := filepath.Join(e.Dir, "hooks.log")
	b := e.Bundle("c", e2e.Sh("echo ran"), func(s *specs.Spec) {
		s.Hooks = &specs.Hooks{
			Prestart:        []specs.Hook{hookTo(log, "prestart")},
			CreateRuntime:   []specs.Hook{hookTo(log, "createRuntime")},
			CreateContainer: []specs.Hook{hookTo(log, "createContainer")},
			StartContainer:  []specs.Hook{hookTo(log, "startContainer")},
			Poststart:       []specs.Hook{hookTo(log, "poststart")},
			Poststop:        []specs.Hook{hookTo(log, "poststop")},
		}
	})
	id := e.ID("c1")
	e.CreateStarted(id, b, "")
	e.WaitStatus(id, "stopped")
	e.MustOK(e.RT("delete", id))

	data, _ := os.ReadFile(log)
	var order []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		name, js, _ := strings.Cut(line, " ")
		var st e2e.ContainerState
		if err := json.Unmarshal([]byte(js), &st); err != nil || st.ID != id || st.Bundle != b {
			t.Errorf("%s hook got state %q (%v), want this container's", name, js, err)
		}
		order = append(order, name)
	}
	want := "prestart createRuntime createContainer startContainer poststart poststop"
	if got := strings.Join(order, " "); got != want {
		t.Errorf("hooks ran as %q, want %q", got, want)
	}
}

// A failing createRuntime hook fails create and leaves nothing behind.
func TestHookFailureFailsCreateCleanly(t *testing.T) {
	e := e2e.NewEnv(t)
	b := e.Bundle("c", e2e.Sh("echo never"), func(s *specs.Spec) {
		s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "echo hook says no >&2; exit 3"}}}}
	})
	r, _ := e.RTFiles("create", "--bundle", b, e.ID("c1"))
	e.MustFail(r)
	e.AssertNoStateDir(e.ID("c1"), "a failed hook")
}

// A hook whose path does not exist fails create with a message naming it.
func TestHookUnknownPath(t *testing.T) {
	e := e2e.NewEnv(t)
	b := e.Bundle("c", e2e.Sh("echo never"), func(s *specs.Spec) {
		s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/nonexistent/hook"}}}
	})
	r, _ := e.RTFiles("create", "--bundle", b, e.ID("c1"))
	if msg := e.MustFail(r); !strings.Contains(msg, "/nonexistent/hook") {
		t.Errorf("message %q does not name the hook", msg)
	}
	e.AssertNoStateDir(e.ID("c1"), "a missing hook")
}
