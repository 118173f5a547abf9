package tests

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
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const (
	// cmdTimeout bounds every runtime invocation: a hung runtime fails its
	// test instead of hanging the suite. Generous, since a VM boots under
	// TCG emulation on the project's machines.
	cmdTimeout = 60 * time.Second
	// stopTimeout bounds waiting for a signalled container to stop.
	stopTimeout = 30 * time.Second
	// settleTimeout is how long helper processes get to exit after the
	// verb that ended them has returned, before they count as leaked.
	settleTimeout = 10 * time.Second
)

var envCount atomic.Int64

// env is one test's private world: a fresh --root and a directory for its
// bundles and host-side files, both under one short directory.
type env struct {
	t    *testing.T
	dir  string // everything of this test lives below dir
	root string // the --root state directory
	pids []int  // container PIDs seen (pid-file, state); all must be gone at the end
	n    int    // counter for file names
	num  int64  // this test's number, part of its container IDs
}

// newEnv makes a test environment whose leak check runs when the test ends.
func newEnv(t *testing.T) *env {
	t.Helper()
	num := envCount.Add(1)
	dir := filepath.Join(suiteDir, strconv.FormatInt(num, 10))
	e := &env{t: t, dir: dir, root: filepath.Join(dir, "r"), num: num}
	if err := os.MkdirAll(e.root, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.finish)
	return e
}

// finish is assertNoLeaks plus clean-up. A passing test must have left
// nothing behind; a failing one gets its containers force-deleted, and
// whatever survives `delete --force` is reported too.
func (e *env) finish() {
	t := e.t
	leaks := e.waitNoLeaks()
	if len(leaks) > 0 && !t.Failed() {
		t.Errorf("leaks at the end of the test:\n  %s", strings.Join(leaks, "\n  "))
	}
	if len(leaks) > 0 || t.Failed() {
		for _, id := range e.knownIDs() {
			e.exec(nil, io.Discard, io.Discard, []string{"delete", "--force", id})
		}
		if leaks := e.waitNoLeaks(); len(leaks) > 0 {
			t.Errorf("still leaking after delete --force of every container:\n  %s", strings.Join(leaks, "\n  "))
			return // keep the directory for inspection; never remove below a live mount
		}
	}
	os.RemoveAll(e.dir)
}

// assertNoLeaks fails the test if anything of this test's runtime is left:
// a process naming its directories, a container directory under --root, a
// mount below its directories, or a container process still alive.
func (e *env) assertNoLeaks() {
	e.t.Helper()
	if leaks := e.waitNoLeaks(); len(leaks) > 0 {
		e.t.Errorf("leaks:\n  %s", strings.Join(leaks, "\n  "))
	}
}

func (e *env) waitNoLeaks() []string {
	deadline := time.Now().Add(settleTimeout)
	for {
		leaks := findLeaks(e.dir, e.pids)
		if len(leaks) == 0 || time.Now().After(deadline) {
			return leaks
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// findLeaks lists what is left of a runtime's activity below dir: processes
// whose command line names a path below dir (shims, qemu and their sockets
// live under --root), directories in dir/r (the --root), mounts below dir,
// and any of pids still alive.
func findLeaks(dir string, pids []int) []string {
	var leaks []string
	self := os.Getpid()
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == self || !alive(pid) {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, arg := range strings.Split(string(cmd), "\x00") {
			if arg == dir || strings.Contains(arg, dir+"/") {
				leaks = append(leaks, fmt.Sprintf("process %d: %s", pid, procCmdline(cmd)))
				break
			}
		}
	}
	for _, pid := range pids {
		if alive(pid) {
			cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			leaks = append(leaks, fmt.Sprintf("container process %d still alive: %s", pid, procCmdline(cmd)))
		}
	}
	// Only the per-test layout has a --root at dir/r; the suite-level
	// check passes suiteDir, whose test directories are removed on success.
	entries, _ := os.ReadDir(filepath.Join(dir, "r"))
	for _, ent := range entries {
		if ent.IsDir() {
			leaks = append(leaks, "container directory left in --root: "+filepath.Join(dir, "r", ent.Name()))
		}
	}
	for _, m := range mountsBelow(dir) {
		leaks = append(leaks, "mount left: "+m)
	}
	return leaks
}

// alive reports whether pid exists and is not a zombie (a zombie has
// exited; only its parent's bookkeeping is left).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name, which may itself
	// contain parentheses and spaces.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

func mountsBelow(dir string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var found []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := strings.ReplaceAll(f[4], `\040`, " ")
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			found = append(found, mp)
		}
	}
	return found
}

func procCmdline(cmd []byte) string {
	return strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
}

// qemuProcesses maps PID to command line of every qemu process on the host.
func qemuProcesses() map[int][]byte {
	found := map[int][]byte{}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || !alive(pid) {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil || len(cmd) == 0 {
			continue
		}
		argv0 := strings.SplitN(string(cmd), "\x00", 2)[0]
		if strings.HasPrefix(filepath.Base(argv0), "qemu") {
			found[pid] = cmd
		}
	}
	return found
}

// knownIDs are the containers this test's --root holds, as `list` reports
// them and as directories on disk (in case `list` itself is broken).
func (e *env) knownIDs() []string {
	seen := map[string]bool{}
	var ids []string
	var out bytes.Buffer
	if e.exec(nil, &out, io.Discard, []string{"list", "--format", "json"}) == 0 {
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
	entries, _ := os.ReadDir(e.root)
	for _, ent := range entries {
		if ent.IsDir() && !seen[ent.Name()] {
			seen[ent.Name()] = true
			ids = append(ids, ent.Name())
		}
	}
	return ids
}

// id makes a container ID unique in the suite. Each test has its own
// --root, but host-wide names derived from the ID (runc's cgroup paths, for
// one) must not collide between tests running in parallel.
func (e *env) id(name string) string {
	return fmt.Sprintf("%s-%d", name, e.num)
}

// result is what one runtime invocation produced.
type result struct {
	args   []string
	code   int
	stdout string
	stderr string
}

func (r result) String() string {
	return fmt.Sprintf("`%s %s` exited %d\nstdout: %q\nstderr: %q",
		filepath.Base(runtimeBin), strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// exec runs the runtime with --root prepended and returns its exit status.
// It fails the test if the runtime does not finish within cmdTimeout.
func (e *env) exec(stdin io.Reader, stdout, stderr io.Writer, args []string) int {
	e.t.Helper()
	full := append([]string{"--root", e.root}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, runtimeBin, full...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	// A leftover helper holding our stdout pipe must not block Wait.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		e.t.Fatalf("`%s %s` did not finish within %v", runtimeBin, strings.Join(full, " "), cmdTimeout)
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		e.t.Errorf("`%s %s` exited but something it started kept its stdout/stderr open", runtimeBin, strings.Join(full, " "))
		return cmd.ProcessState.ExitCode()
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			e.t.Errorf("`%s %s` was killed by %v", runtimeBin, strings.Join(full, " "), st.Signal())
			return 128 + int(st.Signal())
		}
		return ee.ExitCode()
	}
	if err != nil {
		e.t.Fatalf("start %s: %v", runtimeBin, err)
	}
	return 0
}

// rt runs the runtime with captured output and stdin from /dev/null.
func (e *env) rt(args ...string) result {
	e.t.Helper()
	return e.rtIn(nil, args...)
}

// rtIn is rt with the given stdin.
func (e *env) rtIn(stdin io.Reader, args ...string) result {
	e.t.Helper()
	var out, errb bytes.Buffer
	code := e.exec(stdin, &out, &errb, args)
	return result{args: args, code: code, stdout: out.String(), stderr: errb.String()}
}

// rtFiles runs a verb whose stdio the container inherits (create, run
// --detach): stdout and stderr go to files, never to pipes we would wait
// on, because the container keeps them open until it exits. It returns the
// output seen when the runtime exited and the path of the stdout file,
// which keeps receiving the container's output.
func (e *env) rtFiles(args ...string) (result, string) {
	e.t.Helper()
	e.n++
	outPath := filepath.Join(e.dir, fmt.Sprintf("stdout-%d", e.n))
	errPath := filepath.Join(e.dir, fmt.Sprintf("stderr-%d", e.n))
	outF, err := os.Create(outPath)
	if err != nil {
		e.t.Fatal(err)
	}
	defer outF.Close()
	errF, err := os.Create(errPath)
	if err != nil {
		e.t.Fatal(err)
	}
	defer errF.Close()
	code := e.exec(nil, outF, errF, args)
	out, _ := os.ReadFile(outPath)
	errb, _ := os.ReadFile(errPath)
	return result{args: args, code: code, stdout: string(out), stderr: string(errb)}, outPath
}

// mustOK fails the test unless r succeeded.
func (e *env) mustOK(r result) result {
	e.t.Helper()
	if r.code != 0 {
		e.t.Fatalf("unexpected failure: %v", r)
	}
	return r
}

// mustFail asserts that r failed with a message on stderr and returns the
// message.
func (e *env) mustFail(r result) string {
	e.t.Helper()
	if r.code == 0 {
		e.t.Errorf("succeeded, want an error: %v", r)
	} else if strings.TrimSpace(r.stderr) == "" {
		e.t.Errorf("failed without a message on stderr: %v", r)
	}
	return r.stderr
}

// bundle writes a bundle in a new directory: config.json comes from the
// runtime's own `spec` verb, then gets args, the shared rootfs (read-only)
// and no terminal; edit changes whatever else the test needs.
func (e *env) bundle(name string, args []string, edit ...func(*specs.Spec)) string {
	e.t.Helper()
	dir := filepath.Join(e.dir, "b-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	e.mustOK(e.rt("spec", "--bundle", dir))
	s := readSpec(e.t, dir)
	s.Root = &specs.Root{Path: rootfsDir, Readonly: true}
	s.Process.Terminal = false
	s.Process.Args = args
	for _, f := range edit {
		f(s)
	}
	writeSpec(e.t, dir, s)
	return dir
}

func readSpec(t *testing.T, dir string) *specs.Spec {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatalf("`spec` wrote no config.json: %v", err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatalf("`spec` wrote an unreadable config.json: %v", err)
	}
	if s.Version == "" || s.Process == nil || s.Root == nil {
		t.Fatalf("`spec` wrote a config.json without ociVersion, process or root:\n%s", data)
	}
	return &s
}

func writeSpec(t *testing.T, dir string, s *specs.Spec) {
	t.Helper()
	data, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// containerState is the JSON printed by `state`.
type containerState struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Status      string            `json:"status"`
	Pid         int               `json:"pid"`
	Bundle      string            `json:"bundle"`
	Annotations map[string]string `json:"annotations"`
}

func (e *env) state(id string) containerState {
	e.t.Helper()
	r := e.mustOK(e.rt("state", id))
	var st containerState
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		e.t.Fatalf("state %s printed invalid JSON: %v\n%s", id, err, r.stdout)
	}
	if st.ID != id || st.OCIVersion == "" {
		e.t.Fatalf("state %s: want id %q and an ociVersion, got %+v", id, id, st)
	}
	if st.Pid > 0 {
		e.track(st.Pid)
	}
	return st
}

// waitStatus polls `state` until the container reports want.
func (e *env) waitStatus(id, want string) containerState {
	e.t.Helper()
	deadline := time.Now().Add(stopTimeout)
	for {
		st := e.state(id)
		if st.Status == want {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("container %s still %q after %v, want %q", id, st.Status, stopTimeout, want)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitGone waits for a process to exit.
func (e *env) waitGone(pid int) {
	e.t.Helper()
	deadline := time.Now().Add(stopTimeout)
	for alive(pid) {
		if time.Now().After(deadline) {
			e.t.Fatalf("process %d still alive after %v", pid, stopTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *env) track(pid int) {
	for _, p := range e.pids {
		if p == pid {
			return
		}
	}
	e.pids = append(e.pids, pid)
}

// create runs `create --pid-file` and checks the PID file against state.
// It returns the PID and the file that receives the container's stdout.
func (e *env) create(id, bundle string) (int, string) {
	e.t.Helper()
	pidFile := filepath.Join(e.dir, id+".pid")
	r, out := e.rtFiles("create", "--bundle", bundle, "--pid-file", pidFile, id)
	e.mustOK(r)
	data, err := os.ReadFile(pidFile)
	if err != nil {
		e.t.Fatalf("create %s: no pid file: %v", id, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		e.t.Fatalf("create %s: pid file holds %q, want a PID", id, data)
	}
	e.track(pid)
	return pid, out
}

// waitOutput polls a stdout file until it contains want.
func (e *env) waitOutput(path, want string) string {
	e.t.Helper()
	deadline := time.Now().Add(stopTimeout)
	for {
		data, _ := os.ReadFile(path)
		if strings.Contains(string(data), want) {
			return string(data)
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("container output never contained %q within %v; got %q", want, stopTimeout, data)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// keyValues parses "key=value" lines as printed by the probe scripts.
func keyValues(out string) map[string]string {
	kv := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			kv[k] = v
		}
	}
	return kv
}

// wantKV checks that a probe printed key=want.
func wantKV(t *testing.T, kv map[string]string, key, want string) {
	t.Helper()
	got, ok := kv[key]
	if !ok {
		t.Errorf("%s: not printed by the container", key)
	} else if got != want {
		t.Errorf("%s = %q, want %q", key, got, want)
	}
}

// sh is the argv of a busybox shell script.
func sh(script string) []string { return []string{"/bin/sh", "-c", script} }
