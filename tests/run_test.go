package tests

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// `run` relays stdout and stderr separately and exits with the process's
// status. --no-pivot and --no-new-keyring are runc flags podman passes; a
// runtime must at least accept them.
func TestRunStdioAndExitStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.bundle("c", sh("echo to-stdout; echo to-stderr >&2; exit 7"))
	r := e.rt("run", "--no-pivot", "--no-new-keyring", "--bundle", b, e.id("c1"))
	if r.code != 7 {
		t.Errorf("exit status %d, want 7: %v", r.code, r)
	}
	if r.stdout != "to-stdout\n" {
		t.Errorf("stdout %q, want exactly %q", r.stdout, "to-stdout\n")
	}
	if !strings.Contains(r.stderr, "to-stderr") || strings.Contains(r.stderr, "to-stdout") {
		t.Errorf("stderr %q, want to-stderr and only that stream", r.stderr)
	}
	// A container that ran to its end is deleted with it: nothing stays.
	e.mustFail(e.rt("state", e.id("c1")))
}

// A process killed by signal N makes `run` exit 128+N, as in a shell.
func TestRunKilledBySignal(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Without a PID namespace of its own the shell is not an init process,
	// which the kernel would shield from its own SIGKILL.
	b := e.bundle("c", sh("echo before; kill -9 $$; echo after"), withoutNamespace(specs.PIDNamespace))
	r := e.rt("run", "--bundle", b, e.id("c1"))
	if r.code != 137 {
		t.Errorf("exit status %d, want 137 (128+SIGKILL): %v", r.code, r)
	}
	if strings.TrimSpace(r.stdout) != "before" {
		t.Errorf("stdout %q, want only %q", r.stdout, "before")
	}
}

// `echo hi | run ... cat`: stdin reaches the process and its end is seen.
func TestRunStdin(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.bundle("c", []string{"cat"})
	r := e.rtIn(strings.NewReader("hi\nsecond line\n"), "run", "--bundle", b, e.id("c1"))
	if r.code != 0 {
		t.Fatalf("cat did not exit 0 on end of input: %v", r)
	}
	if r.stdout != "hi\nsecond line\n" {
		t.Errorf("stdout %q, want the input back", r.stdout)
	}
}

// withoutNamespace removes a namespace from the spec.
func withoutNamespace(ns specs.LinuxNamespaceType) func(*specs.Spec) {
	return func(s *specs.Spec) {
		var kept []specs.LinuxNamespace
		for _, n := range s.Linux.Namespaces {
			if n.Type != ns {
				kept = append(kept, n)
			}
		}
		s.Linux.Namespaces = kept
	}
}
