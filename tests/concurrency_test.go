package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// run is the runtime invoked from any goroutine (the env helpers report
// through t, which only the test's own goroutine may stop).
func (e *env) runAsync(extra []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*cmdTimeout)
	defer cancel()
	full := append(append([]string{"--root", e.root}, extra...), args...)
	cmd := exec.CommandContext(ctx, runtimeBin, full...)
	var out bytes.Buffer
	// create's stdio is inherited by the container: never a pipe we wait on.
	f, err := os.CreateTemp(e.dir, "async-*")
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
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	// 20 VMs booting at once on a small machine share its CPUs: allow
	// them the time.
	cfg := filepath.Join(e.dir, "slow.toml")
	os.WriteFile(cfg, []byte("[hypervisor]\nboot_timeout = 200\n"), 0o644)
	extra := []string{"--config", cfg}
	b := e.bundle("c", sh("trap 'exit 0' TERM; while true; do sleep 1; done"))

	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		id := e.id(fmt.Sprintf("p%d", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			step := func(args ...string) string {
				out, err := e.runAsync(extra, args...)
				if err != nil {
					panic(err)
				}
				return out
			}
			defer func() {
				if r := recover(); r != nil {
					errs <- fmt.Errorf("%s: %v", id, r)
					e.runAsync(nil, "delete", "--force", id)
				}
			}()
			step("create", "--bundle", b, id)
			step("start", id)
			var st containerState
			if err := json.Unmarshal([]byte(step("state", id)), &st); err != nil || st.Status != "running" {
				panic(fmt.Sprintf("state after start: %+v %v", st, err))
			}
			step("kill", id, "KILL")
			deadline := time.Now().Add(stopTimeout)
			for {
				json.Unmarshal([]byte(step("state", id)), &st)
				if st.Status == "stopped" {
					break
				}
				if time.Now().After(deadline) {
					panic("not stopped after kill")
				}
				time.Sleep(200 * time.Millisecond)
			}
			step("delete", id)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if out, _ := e.runAsync(nil, "list", "--quiet"); strings.TrimSpace(out) != "" {
		t.Errorf("list after deleting everything: %q", out)
	}
}

// Parallel creates of one ID: exactly one wins, the others are refused
// cleanly, and the winner is intact.
func TestConcurrentCreatesOfOneID(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	b := e.bundle("c", sh("sleep 60"))
	id := e.id("same")
	const n = 5
	var wg sync.WaitGroup
	results := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.runAsync(nil, "create", "--bundle", b, id)
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
	if st := e.state(id); st.Status != "created" {
		t.Errorf("the winner is %q, want created", st.Status)
	}
	e.mustOK(e.rt("delete", id))
}
