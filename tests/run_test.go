package tests

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// `run` relays stdout and stderr separately and exits with the process's
// status. --no-pivot and --no-new-keyring are runc flags podman passes; a
// runtime must at least accept them.
func TestRunStdioAndExitStatus(t *testing.T) {
	e := e2e.NewEnv(t)
	b := e.Bundle("c", e2e.Sh("echo to-stdout; echo to-stderr >&2; exit 7"))
	r := e.RT("run", "--no-pivot", "--no-new-keyring", "--bundle", b, e.ID("c1"))
	if r.Code != 7 {
		t.Errorf("exit status %d, want 7: %v", r.Code, r)
	}
	if r.Stdout != "to-stdout\n" {
		t.Errorf("stdout %q, want exactly %q", r.Stdout, "to-stdout\n")
	}
	if !strings.Contains(r.Stderr, "to-stderr") || strings.Contains(r.Stderr, "to-stdout") {
		t.Errorf("stderr %q, want to-stderr and only that stream", r.Stderr)
	}
	// A container that ran to its end is deleted with it: nothing stays.
	e.MustFail(e.RT("state", e.ID("c1")))
}

// A process killed by signal N makes `run` exit 128+N, as in a shell.
func TestRunKilledBySignal(t *testing.T) {
	e := e2e.NewEnv(t)
	// Without a PID namespace of its own the shell is not an init process,
	// which the kernel would shield from its own SIGKILL.
	b := e.Bundle("c", e2e.Sh("echo before; kill -9 $$; echo after"), e2e.WithoutNamespace(specs.PIDNamespace))
	r := e.RT("run", "--bundle", b, e.ID("c1"))
	if r.Code != 137 {
		t.Errorf("exit status %d, want 137 (128+SIGKILL): %v", r.Code, r)
	}
	if strings.TrimSpace(r.Stdout) != "before" {
		t.Errorf("stdout %q, want only %q", r.Stdout, "before")
	}
}

// `echo hi | run ... cat`: stdin reaches the process and its end is seen.
func TestRunStdin(t *testing.T) {
	e := e2e.NewEnv(t)
	b := e.Bundle("c", []string{"cat"})
	r := e.RTIn(strings.NewReader("hi\nsecond line\n"), "run", "--bundle", b, e.ID("c1"))
	if r.Code != 0 {
		t.Fatalf("cat did not exit 0 on end of input: %v", r)
	}
	if r.Stdout != "hi\nsecond line\n" {
		t.Errorf("stdout %q, want the input back", r.Stdout)
	}
}
