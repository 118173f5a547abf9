package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// runAsync is the runtime invoked from any goroutine (the env helpers
// report through t, which only the test's own goroutine may stop).
func runAsync(e *e2e.Env, extra []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*e2e.CmdTimeout)
	defer cancel()
	cmd := e.Command(ctx, append(append([]string{}, extra...), args...)...)
	var out bytes.Buffer
	// create's stdio is inherited by the container: never a pipe we wait on.
	f, err := os.CreateTemp(e.Dir, "async-*")
	if err != nil {
		return "", err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Run()
	b, _ := os.ReadFile(f.Name())
	out.Write(b)
	if err != nil {
		return out.String(), fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// 20 containers driven through their whole lifecycle by parallel
// invocations on one state root: every step succeeds, every status is
// right, nothing is left.
func TestConcurrentLifecycles(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	// 20 VMs booting at once on a small machine share its CPUs: allow
	// them the time.
	extra := []string{"--config", e.WriteFile("slow.toml", "[hypervisor]\nboot_timeout = 200\n")}
	b := e.Bundle("c", e2e.Sh("trap 'exit 0' TERM; while true; do sleep 1; done"))

	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		id := e.ID(fmt.Sprintf("p%d", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			step := func(args ...string) string {
				out, err := runAsync(e, extra, args...)
				if err != nil {
					panic(err)
				}
				return out
			}
			defer func() {
				if r := recover(); r != nil {
					errs <- fmt.Errorf("%s: %v", id, r)
					runAsync(e, nil, "delete", "--force", id)
				}
			}()
			step("create", "--bundle", b, id)
			step("start", id)
			var st e2e.ContainerState
			if err := json.Unmarshal([]byte(step("state", id)), &st); err != nil || st.Status != "running" {
				panic(fmt.Sprintf("state after start: %+v %v", st, err))
			}
			step("kill", id, "KILL")
			for deadline := time.Now().Add(e2e.StopTimeout); st.Status != "stopped"; time.Sleep(200 * time.Millisecond) {
				if time.Now().After(deadline) {
					panic("not stopped after kill")
				}
				json.Unmarshal([]byte(step("state", id)), &st)
			}
			step("delete", id)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if out, _ := runAsync(e, nil, "list", "--quiet"); strings.TrimSpace(out) != "" {
		t.Errorf("list after deleting everything: %q", out)
	}
}

// Parallel creates of one ID: exactly one wins, the others are refused
// cleanly, and the winner is intact.
func TestConcurrentCreatesOfOneID(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	b := e.Bundle("c", e2e.Sh("sleep 60"))
	id := e.ID("same")
	const n = 5
	var wg sync.WaitGroup
	results := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := runAsync(e, nil, "create", "--bundle", b, id)
			results <- err
		}()
	}
	wg.Wait()
	close(results)
	wins := 0
	for err := range results {
		if err == nil {
			wins++
		} else if !strings.Contains(err.Error(), "already exists") {
			t.Errorf("a losing create failed with an unclear message: %v", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d creates of one ID succeeded, want exactly 1", wins)
	}
	if st := e.State(id); st.Status != "created" {
		t.Errorf("the winner is %q, want created", st.Status)
	}
	e.MustOK(e.RT("delete", id))
}
