package sandbox

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/skiff-oci/skiff/internal/ocitest"
	"github.com/skiff-oci/skiff/sandbox/state"
)

func TestExecProcessFromFlags(t *testing.T) {
	dir := ocitest.Bundle(t, func(s *specs.Spec) {
		s.Process.Env = []string{"PATH=/bin", "A=1"}
		s.Process.User = specs.User{UID: 5, GID: 6}
		s.Process.Terminal = true
	})
	st := &state.Container{Bundle: dir}
	yes := true
	p, err := execProcess(st, ExecOptions{
		Args: []string{"sh", "-c", "x"}, Env: []string{"B=2"}, Cwd: "/tmp", User: "1000",
		AdditionalGids: []int64{7}, Caps: []string{"net_admin"}, NoNewPrivs: &yes,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.Args, []string{"sh", "-c", "x"}) || p.Cwd != "/tmp" || p.Terminal {
		t.Errorf("args %q cwd %q terminal %v", p.Args, p.Cwd, p.Terminal)
	}
	if !reflect.DeepEqual(p.Env, []string{"PATH=/bin", "A=1", "B=2"}) {
		t.Errorf("env %q: want the container's, then --env", p.Env)
	}
	if p.User.UID != 1000 || p.User.GID != 6 || !reflect.DeepEqual(p.User.AdditionalGids, []uint32{7}) {
		t.Errorf("user %+v: want uid 1000, the container's gid 6, additional gid 7", p.User)
	}
	if !p.NoNewPrivileges || p.Capabilities == nil || !slices.Contains(p.Capabilities.Bounding, "CAP_NET_ADMIN") || !slices.Contains(p.Capabilities.Effective, "CAP_NET_ADMIN") {
		t.Errorf("no_new_privs %v caps %+v", p.NoNewPrivileges, p.Capabilities)
	}

	if p, err := execProcess(st, ExecOptions{Args: []string{"id"}, User: "1:2", Tty: true}); err != nil || p.User.UID != 1 || p.User.GID != 2 || !p.Terminal {
		t.Errorf("--user 1:2 --tty: %+v, %v", p, err)
	}
	for _, o := range []ExecOptions{
		{},
		{Args: []string{"id"}, User: "root"},
		{Args: []string{"id"}, User: "1:x"},
		{Args: []string{"id"}, Cwd: "relative"},
	} {
		if _, err := execProcess(st, o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestExecProcessFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "p.json")
	os.WriteFile(good, []byte(`{"args": ["true"], "cwd": "/", "env": ["X=1"]}`), 0o644)
	p, err := execProcess(&state.Container{}, ExecOptions{ProcessFile: good, Args: []string{"ignored"}})
	if err != nil || !reflect.DeepEqual(p.Args, []string{"true"}) {
		t.Errorf("process file: %+v, %v", p, err)
	}
	for name, body := range map[string]string{
		"malformed": `{"args": [`,
		"no args":   `{"cwd": "/"}`,
		"rel cwd":   `{"args": ["true"], "cwd": "tmp"}`,
	} {
		f := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		os.WriteFile(f, []byte(body), 0o644)
		if _, err := execProcess(&state.Container{}, ExecOptions{ProcessFile: f}); err == nil || !strings.Contains(err.Error(), "process file") {
			t.Errorf("%s: got %v, want an error naming the process file", name, err)
		}
	}
}

func TestCheckConsole(t *testing.T) {
	if err := checkConsole(true, "", false); err == nil || !strings.Contains(err.Error(), "console socket") {
		t.Errorf("detached terminal without a console socket: %v", err)
	}
	if checkConsole(true, "", true) != nil || checkConsole(true, "/s", false) != nil || checkConsole(false, "", false) != nil {
		t.Error("a valid combination was refused")
	}
	if checkConsole(false, "/s", false) == nil {
		t.Error("console socket without a terminal accepted")
	}
}
