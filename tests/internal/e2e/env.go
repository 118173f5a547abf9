package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// envCount numbers the suite's environments (and podman names): part of
// every host-wide name a test makes, so parallel tests never collide.
var envCount atomic.Int64

// Env is one test's private world: a fresh --root and a directory for its
// bundles and host-side files, both under one short directory. Its methods
// report to T.
type Env struct {
	T    *testing.T
	Dir  string // everything of this test lives below Dir
	Root string // the --root state directory
	Num  int64  // this test's number, part of its container IDs

	*shared // what subtests' Envs (For) share with their test's
}

// shared is the part of an Env its subtests' Envs share.
type shared struct {
	mu   sync.Mutex
	pids []int // container PIDs seen (pid-file, state); all must be gone at the end
	n    int   // counter for file names
}

// NewEnv marks the test parallel (VM boots under TCG are slow: the suite
// overlaps them) and makes its environment, whose leak check runs when the
// test ends.
func NewEnv(t *testing.T) *Env {
	t.Helper()
	t.Parallel()
	return NewSerialEnv(t)
}

// NewSerialEnv is NewEnv for a test that must not run beside others (it
// counts this process's descriptors, say).
func NewSerialEnv(t *testing.T) *Env {
	t.Helper()
	num := envCount.Add(1)
	dir := filepath.Join(suiteDir, strconv.FormatInt(num, 10))
	e := &Env{T: t, Dir: dir, Root: filepath.Join(dir, "r"), Num: num, shared: &shared{}}
	if err := os.MkdirAll(e.Root, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.finish)
	return e
}

// For is e reporting to t, a subtest of e's test that works on e's
// containers: a failure is the subtest's, the leak check stays e's.
func (e *Env) For(t *testing.T) *Env {
	c := *e
	c.T = t
	return &c
}

// Step runs f as a subtest of e's test, on e's containers (see For). The
// steps of a test run in order; it returns whether the step passed.
func (e *Env) Step(name string, f func(e *Env)) bool {
	e.T.Helper()
	return e.T.Run(name, func(t *testing.T) { f(e.For(t)) })
}

// finish is AssertNoLeaks plus clean-up. A passing test must have left
// nothing behind; a failing one gets its containers force-deleted, and
// whatever survives `delete --force` is reported too.
func (e *Env) finish() {
	t := e.T
	leaks := e.waitNoLeaks()
	if len(leaks) > 0 && !t.Failed() {
		t.Errorf("leaks at the end of the test:\n  %s", strings.Join(leaks, "\n  "))
	}
	if len(leaks) > 0 || t.Failed() {
		for _, id := range e.knownIDs() {
			e.Exec(nil, io.Discard, io.Discard, []string{"delete", "--force", id})
		}
		if leaks := e.waitNoLeaks(); len(leaks) > 0 {
			t.Errorf("still leaking after delete --force of every container:\n  %s", strings.Join(leaks, "\n  "))
			return // keep the directory for inspection; never remove below a live mount
		}
	}
	os.RemoveAll(e.Dir)
}

// knownIDs are the containers this test's --root holds, as `list` reports
// them and as directories on disk (in case `list` itself is broken).
func (e *Env) knownIDs() []string {
	seen := map[string]bool{}
	var ids []string
	var out bytes.Buffer
	if e.Exec(nil, &out, io.Discard, []string{"list", "--format", "json"}) == 0 {
		var list []struct {
			ID string `json:"id"`
		}
		json.Unmarshal(out.Bytes(), &list)
		for _, c := range list {
			if !seen[c.ID] {
				seen[c.ID] = true
				ids = append(ids, c.ID)
			}
		}
	}
	entries, _ := os.ReadDir(e.Root)
	for _, ent := range entries {
		if ent.IsDir() && !seen[ent.Name()] {
			seen[ent.Name()] = true
			ids = append(ids, ent.Name())
		}
	}
	return ids
}

// ID makes a container ID unique in the suite. Each test has its own
// --root, but host-wide names derived from the ID (runc's cgroup paths, for
// one) must not collide between tests running in parallel.
func (e *Env) ID(name string) string {
	return fmt.Sprintf("%s-%d", name, e.Num)
}

// Track adds pid to the container processes that must be gone when the
// test ends.
func (e *Env) Track(pid int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range e.pids {
		if p == pid {
			return
		}
	}
	e.pids = append(e.pids, pid)
}

func (e *Env) trackedPIDs() []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]int(nil), e.pids...)
}

// FreshPath is a path below Dir that no other call returned: name with a
// number before its extension.
func (e *Env) FreshPath(name string) string {
	e.mu.Lock()
	e.n++
	n := e.n
	e.mu.Unlock()
	ext := filepath.Ext(name)
	return filepath.Join(e.Dir, fmt.Sprintf("%s-%d%s", strings.TrimSuffix(name, ext), n, ext))
}

// WriteFile writes content to name below Dir (making its directory) and
// returns the path: configurations, files to bind-mount, volumes' seeds.
func (e *Env) WriteFile(name, content string) string {
	e.T.Helper()
	p := filepath.Join(e.Dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.T.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		e.T.Fatal(err)
	}
	return p
}

// Mkdir makes the directory name below Dir (and its parents) and returns
// its path.
func (e *Env) Mkdir(name string) string {
	e.T.Helper()
	p := filepath.Join(e.Dir, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		e.T.Fatal(err)
	}
	return p
}

// Result is what one runtime invocation produced.
type Result struct {
	Args   []string
	Code   int
	Stdout string
	Stderr string
}

func (r Result) String() string {
	return fmt.Sprintf("`%s %s` exited %d\nstdout: %q\nstderr: %q",
		filepath.Base(runtimeBin), strings.Join(r.Args, " "), r.Code, r.Stdout, r.Stderr)
}

// Command is the runtime with --root prepended, bound to ctx, not started:
// for a test that needs the process itself (to signal it, give it a
// terminal, wait for it in the background).
func (e *Env) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, runtimeBin, append([]string{"--root", e.Root}, args...)...)
	// A leftover helper holding our stdout pipe must not block Wait.
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Exec runs the runtime with --root prepended and returns its exit status.
// It fails the test if the runtime does not finish within CmdTimeout.
func (e *Env) Exec(stdin io.Reader, stdout, stderr io.Writer, args []string) int {
	e.T.Helper()
	full := append([]string{"--root", e.Root}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), CmdTimeout)
	defer cancel()
	cmd := e.Command(ctx, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		e.T.Fatalf("`%s %s` did not finish within %v", runtimeBin, strings.Join(full, " "), CmdTimeout)
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		e.T.Errorf("`%s %s` exited but something it started kept its stdout/stderr open", runtimeBin, strings.Join(full, " "))
		return cmd.ProcessState.ExitCode()
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			e.T.Errorf("`%s %s` was killed by %v", runtimeBin, strings.Join(full, " "), st.Signal())
			return 128 + int(st.Signal())
		}
		return ee.ExitCode()
	}
	if err != nil {
		e.T.Fatalf("start %s: %v", runtimeBin, err)
	}
	return 0
}

// RT runs the runtime with captured output and stdin from /dev/null.
func (e *Env) RT(args ...string) Result {
	e.T.Helper()
	return e.RTIn(nil, args...)
}

// RTIn is RT with the given stdin.
func (e *Env) RTIn(stdin io.Reader, args ...string) Result {
	e.T.Helper()
	var out, errb bytes.Buffer
	code := e.Exec(stdin, &out, &errb, args)
	return Result{Args: args, Code: code, Stdout: out.String(), Stderr: errb.String()}
}

// RTFiles runs a verb whose stdio the container inherits (create, run
// --detach): stdout and stderr go to files, never to pipes we would wait
// on, because the container keeps them open until it exits. It returns the
// output seen when the runtime exited and the path of the stdout file,
// which keeps receiving the container's output.
func (e *Env) RTFiles(args ...string) (Result, string) {
	e.T.Helper()
	outPath := e.FreshPath("stdout")
	errPath := strings.Replace(outPath, "stdout-", "stderr-", 1)
	outF, err := os.Create(outPath)
	if err != nil {
		e.T.Fatal(err)
	}
	defer outF.Close()
	errF, err := os.Create(errPath)
	if err != nil {
		e.T.Fatal(err)
	}
	defer errF.Close()
	code := e.Exec(nil, outF, errF, args)
	out, _ := os.ReadFile(outPath)
	errb, _ := os.ReadFile(errPath)
	return Result{Args: args, Code: code, Stdout: string(out), Stderr: string(errb)}, outPath
}

// MustOK fails the test unless r succeeded.
func (e *Env) MustOK(r Result) Result {
	e.T.Helper()
	if r.Code != 0 {
		e.T.Fatalf("unexpected failure: %v", r)
	}
	return r
}

// MustFail asserts that r failed with a message on stderr and returns the
// message.
func (e *Env) MustFail(r Result) string {
	e.T.Helper()
	if r.Code == 0 {
		e.T.Errorf("succeeded, want an error: %v", r)
	} else if strings.TrimSpace(r.Stderr) == "" {
		e.T.Errorf("failed without a message on stderr: %v", r)
	}
	return r.Stderr
}

// ContainerState is the JSON printed by `state`.
type ContainerState struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Status      string            `json:"status"`
	Pid         int               `json:"pid"`
	Bundle      string            `json:"bundle"`
	Annotations map[string]string `json:"annotations"`
}

// State runs `state id` and checks that it names the container.
func (e *Env) State(id string) ContainerState {
	e.T.Helper()
	r := e.MustOK(e.RT("state", id))
	var st ContainerState
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		e.T.Fatalf("state %s printed invalid JSON: %v\n%s", id, err, r.Stdout)
	}
	if st.ID != id || st.OCIVersion == "" {
		e.T.Fatalf("state %s: want id %q and an ociVersion, got %+v", id, id, st)
	}
	if st.Pid > 0 {
		e.Track(st.Pid)
	}
	return st
}

// WaitStatus polls `state` until the container reports want.
func (e *Env) WaitStatus(id, want string) ContainerState {
	e.T.Helper()
	var st ContainerState
	e.Poll(func() bool { st = e.State(id); return st.Status == want },
		func() string { return fmt.Sprintf("container %s still %q, want %q", id, st.Status, want) })
	return st
}

// WaitGone waits for a process to exit.
func (e *Env) WaitGone(pid int) {
	e.T.Helper()
	e.Poll(func() bool { return !Alive(pid) }, func() string { return fmt.Sprintf("process %d still alive", pid) })
}

// WaitOutput polls a stdout file until it contains want, and returns it.
func (e *Env) WaitOutput(path, want string) string {
	e.T.Helper()
	var data []byte
	e.Poll(func() bool { data, _ = os.ReadFile(path); return strings.Contains(string(data), want) },
		func() string { return fmt.Sprintf("container output never contained %q; got %q", want, data) })
	return string(data)
}

// Poll checks cond every 200 ms until it holds, and fails the test with
// what() if StopTimeout passes first.
func (e *Env) Poll(cond func() bool, what func() string) {
	e.T.Helper()
	Poll(e.T, cond, what)
}

// Poll checks cond every 200 ms until it holds, and fails t with what()
// if StopTimeout passes first.
func Poll(t *testing.T, cond func() bool, what func() string) {
	t.Helper()
	PollFor(t, StopTimeout, cond, what)
}

// PollFor is Poll with its own time limit.
func PollFor(t *testing.T, limit time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s after %v", what(), limit)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// WaitFor polls cond until it holds or StopTimeout passes.
func WaitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	Poll(t, cond, func() string { return "timed out waiting for " + what })
}

// Create runs `create --pid-file` and checks the PID file. It returns the
// PID and the file that receives the container's stdout.
func (e *Env) Create(id, bundle string, flags ...string) (int, string) {
	e.T.Helper()
	pidFile := filepath.Join(e.Dir, id+".pid")
	args := append(append([]string{}, flags...), "create", "--bundle", bundle, "--pid-file", pidFile, id)
	r, out := e.RTFiles(args...)
	e.MustOK(r)
	return e.ReadPIDFile(pidFile), out
}

// ReadPIDFile reads a PID a verb wrote with --pid-file, and tracks it.
func (e *Env) ReadPIDFile(path string) int {
	e.T.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		e.T.Fatalf("no pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		e.T.Fatalf("pid file %s holds %q, want a PID", path, data)
	}
	e.Track(pid)
	return pid
}

// CreateStarted creates and starts a container and waits until its
// output shows ready ("" waits for nothing). It returns the container's
// PID and stdout file.
func (e *Env) CreateStarted(id, bundle, ready string, flags ...string) (int, string) {
	e.T.Helper()
	pid, out := e.Create(id, bundle, flags...)
	e.MustOK(e.RT(append(append([]string{}, flags...), "start", id)...))
	if ready != "" {
		e.WaitOutput(out, ready)
	}
	return pid, out
}

// ExecTarget is a container init that leaves traces an exec'd process can
// only see from inside the container (a file in its mounts, its cgroup),
// says "started", and exits 0 on TERM.
const ExecTarget = `echo exec-init-marker > /dev/shm/marker
echo "init-cgroup=$(cat /proc/self/cgroup)"
trap "echo got-term; exit 0" TERM; echo started; while true; do sleep 1; done`

// StartExecTarget creates and starts a long-running ExecTarget container
// named after name, for exec.
func (e *Env) StartExecTarget(name string) (id string, pid int, out string) {
	e.T.Helper()
	id = e.ID(name)
	pid, out = e.CreateStarted(id, e.Bundle(name, Sh(ExecTarget)), "started")
	return id, pid, out
}

// QEMUPID reads the VMM's pid file in the container's state directory,
// waiting for it to appear.
func (e *Env) QEMUPID(id string) int {
	e.T.Helper()
	pid := 0
	// The VMM starts a while after create does, on a loaded machine.
	PollFor(e.T, CmdTimeout, func() bool {
		b, err := os.ReadFile(filepath.Join(e.Root, id, "qemu.pid"))
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0
	}, func() string { return "no qemu.pid for " + id })
	return pid
}

// ForceDelete runs `delete --force id`, waits for the container's process
// pid to exit and checks that `state` no longer knows the container.
func (e *Env) ForceDelete(id string, pid int) {
	e.T.Helper()
	e.MustOK(e.RT("delete", "--force", id))
	e.WaitGone(pid)
	e.MustFail(e.RT("state", id))
}
