package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
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
	skiffOnly(t)
	// Not parallel: the descriptor count is this whole process's, and
	// parallel tests hold ptys, sockets and pipes of their own meanwhile.
	// Sequential tests run before any parallel one resumes.
	e := newEnv(t)
	n := soakCycles(t)
	// A bind-mounted file: skiff mounts it on the host for each cycle.
	file := filepath.Join(e.dir, "soak-file")
	os.WriteFile(file, []byte("soak\n"), 0o644)
	b := e.bundle("c", sh(`read x < /etc/myfile; [ "$x" = soak ] || exit 99; echo "cycle $CYCLE"; exit $((CYCLE % 7))`),
		func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/etc/myfile", Type: "bind", Source: file, Options: []string{"bind", "ro"}})
		})
	spec := readSpec(t, b)
	env := spec.Process.Env
	fdsBefore, mountsBefore := openFDs(), mountCount(e.dir)
	for i := 0; i < n; i++ {
		spec.Process.Env = append(env[:len(env):len(env)], fmt.Sprintf("CYCLE=%d", i))
		writeSpec(t, b, spec)
		r := e.rt("run", "--bundle", b, e.id(fmt.Sprintf("s%d", i%3)))
		if r.code != i%7 || strings.TrimSpace(r.stdout) != fmt.Sprintf("cycle %d", i) {
			t.Fatalf("cycle %d: %v", i, r)
		}
		if leaks := findLeaks(e.dir, nil); len(leaks) > 0 {
			t.Fatalf("cycle %d left:\n  %s", i, strings.Join(leaks, "\n  "))
		}
	}
	if after := openFDs(); after > fdsBefore {
		t.Errorf("open file descriptors grew from %d to %d over %d cycles", fdsBefore, after, n)
	}
	if after := mountCount(e.dir); after != mountsBefore {
		t.Errorf("mounts went from %d to %d over %d cycles", mountsBefore, after, n)
	}
}

// mountCount is the number of host mounts whose mount point is below dir
// (a file bind mount makes one in the container's state directory while
// it runs).
func mountCount(dir string) int {
	return len(mountsBelow(dir))
}
