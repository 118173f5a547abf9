package tests

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// soakCycles is how many run/delete cycles TestSoak drives:
// SKIFF_SOAK_CYCLES (`make test`, and so CI, sets 200), else a short 20 so
// that a developer's `go test ./...` stays quick.
func soakCycles(t *testing.T) int {
	if s := os.Getenv("SKIFF_SOAK_CYCLES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("SKIFF_SOAK_CYCLES=%q: want a positive number", s)
		}
		return n
	}
	return 20
}

// openFDs counts this process's open file descriptors: the harness starts
// a runtime process per step, and a leaked pipe per cycle would show.
func openFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

// TestSoak runs and deletes containers in sequence, many times: after each
// cycle nothing of the container may remain (the env's leak check: no
// process, mount or state directory), every exit status must be right, and
// at the end this process holds as many file descriptors as at the start.
func TestSoak(t *testing.T) {
	e2e.SkiffOnly(t)
	// Not parallel: the descriptor count is this whole process's, and
	// parallel tests hold ptys, sockets and pipes of their own meanwhile.
	// Sequential tests run before any parallel one resumes.
	e := e2e.NewSerialEnv(t)
	n := soakCycles(t)
	// A bind-mounted file: skiff mounts it on the host for each cycle.
	file := e.WriteFile("soak-file", "soak\n")
	b := e.Bundle("c", e2e.Sh(`read x < /etc/myfile; [ "$x" = soak ] || exit 99; echo "cycle $CYCLE"; exit $((CYCLE % 7))`),
		e2e.Mounts(e2e.Bind("/etc/myfile", file, "bind", "ro")))
	spec := e2e.ReadSpec(t, b)
	env := spec.Process.Env
	fdsBefore, mountsBefore := openFDs(), len(e2e.MountsBelow(e.Dir))
	for i := 0; i < n; i++ {
		spec.Process.Env = append(env[:len(env):len(env)], fmt.Sprintf("CYCLE=%d", i))
		e2e.WriteSpec(t, b, spec)
		r := e.RT("run", "--bundle", b, e.ID(fmt.Sprintf("s%d", i%3)))
		if r.Code != i%7 || strings.TrimSpace(r.Stdout) != fmt.Sprintf("cycle %d", i) {
			t.Fatalf("cycle %d: %v", i, r)
		}
		if leaks := e2e.FindLeaks(e.Dir, nil); len(leaks) > 0 {
			t.Fatalf("cycle %d left:\n  %s", i, strings.Join(leaks, "\n  "))
		}
	}
	if after := openFDs(); after > fdsBefore {
		t.Errorf("open file descriptors grew from %d to %d over %d cycles", fdsBefore, after, n)
	}
	if after := len(e2e.MountsBelow(e.Dir)); after != mountsBefore {
		t.Errorf("mounts went from %d to %d over %d cycles", mountsBefore, after, n)
	}
}
