package tests

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// execInit is a container init that leaves traces an exec'd process can
// only see from inside the container: a file in its mounts, its cgroup.
const execInit = `echo exec-init-marker > /dev/shm/marker
echo "init-cgroup=$(cat /proc/self/cgroup)"
trap "echo got-term; exit 0" TERM; echo started; while true; do sleep 1; done`

// startExecTarget creates and starts a long-running container for exec.
func (e *env) startExecTarget(name string) (id string, pid int, out string) {
	e.t.Helper()
	id = e.id(name)
	pid, out = e.create(id, e.bundle(name, sh(execInit)))
	e.mustOK(e.rt("start", id))
	e.waitOutput(out, "started")
	return id, pid, out
}

// exec runs a process inside the container: in its mounts, PID namespace,
// hostname and cgroup; stdout and stderr apart, the exit status passed on,
// stdin relayed, and runc's process flags honoured.
func TestExecInRunningContainer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id, _, out := e.startExecTarget("x")

	r := e.rt("exec", id, "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 5")
	if r.code != 5 {
		t.Errorf("exit status %d, want 5: %v", r.code, r)
	}
	if r.stdout != "to-stdout\n" || strings.TrimSpace(r.stderr) != "to-stderr" {
		t.Errorf("stdout %q stderr %q, want each stream on its own", r.stdout, r.stderr)
	}

	// Same mounts, PID namespace, hostname and cgroup as the init.
	r = e.mustOK(e.rt("exec", id, "sh", "-c",
		`echo "marker=$(cat /dev/shm/marker)"; echo "init=$(tr '\0' ' ' </proc/1/cmdline)"; echo "host=$(hostname)"; echo "cgroup=$(cat /proc/self/cgroup)"`))
	kv := keyValues(r.stdout)
	wantKV(t, kv, "marker", "exec-init-marker")
	if !strings.Contains(kv["init"], "exec-init-marker") {
		t.Errorf("PID 1 seen by exec is %q, want the container's init (not in its PID namespace?)", kv["init"])
	}
	wantKV(t, kv, "host", readSpec(t, e.dir+"/b-x").Hostname)
	initKV := keyValues(e.waitOutput(out, "init-cgroup="))
	if kv["cgroup"] != initKV["init-cgroup"] {
		t.Errorf("exec'd process in cgroup %q, the container's init in %q", kv["cgroup"], initKV["init-cgroup"])
	}

	// --env, --cwd, --user, --no-new-privs, and flags conmon passes.
	r = e.mustOK(e.rt("exec", "--env", "FOO=bar", "--env", "BAZ=qux", "--cwd", "/tmp", "--user", "1000:1000",
		"--no-new-privs", "--tty=false", "--preserve-fds", "0", "--cap", "CAP_CHOWN", id,
		"sh", "-c", `echo "foo=$FOO"; echo "baz=$BAZ"; echo "pwd=$(pwd)"; echo "uid=$(id -u)"; echo "gid=$(id -g)"; grep NoNewPrivs /proc/self/status | tr -d ' \t' | tr : =`))
	kv = keyValues(r.stdout)
	wantKV(t, kv, "foo", "bar")
	wantKV(t, kv, "baz", "qux")
	wantKV(t, kv, "pwd", "/tmp")
	wantKV(t, kv, "uid", "1000")
	wantKV(t, kv, "gid", "1000")
	wantKV(t, kv, "NoNewPrivs", "1")

	// stdin reaches the process and its end is seen.
	r = e.rtIn(strings.NewReader("line one\nline two\n"), "exec", id, "cat")
	if r.code != 0 || r.stdout != "line one\nline two\n" {
		t.Errorf("cat through exec: %v", r)
	}

	// A process killed by signal N exits 128+N.
	if r := e.rt("exec", id, "sh", "-c", "kill -9 $$"); r.code != 137 {
		t.Errorf("exec'd process killed by SIGKILL: exit %d, want 137: %v", r.code, r)
	}

	// A command that does not exist: runc's message and status.
	r = e.rt("exec", id, "no-such-command")
	if msg := e.mustFail(r); !strings.Contains(msg, "executable file not found") {
		t.Errorf("exec of a missing command says %q, want it to say the executable was not found", msg)
	}
	if r.code != 255 {
		t.Errorf("exec of a missing command exited %d, want 255 as runc", r.code)
	}

	// --process: the whole process from a file.
	proc := specs.Process{
		Args: []string{"sh", "-c", `echo "from-file=$WHO"; exit 4`},
		Env:  []string{"PATH=/bin", "WHO=process.json"},
		Cwd:  "/",
	}
	pf := filepath.Join(e.dir, "process.json")
	data, _ := json.Marshal(proc)
	if err := os.WriteFile(pf, data, 0o644); err != nil {
		t.Fatal(err)
	}
	r = e.rt("exec", "--process", pf, id)
	if r.code != 4 || keyValues(r.stdout)["from-file"] != "process.json" {
		t.Errorf("exec --process: want from-file=process.json and status 4: %v", r)
	}

	// The container itself is unaffected by all of this.
	if st := e.state(id); st.Status != "running" {
		t.Errorf("container %s after the execs: %s, want running", id, st.Status)
	}
	e.mustOK(e.rt("kill", id, "TERM"))
	e.waitStatus(id, "stopped")
	e.mustOK(e.rt("delete", id))
}

// exec --detach returns at once while the process runs on, its output
// still relayed; its pid file names a process that lives as long as the
// exec'd one. Without --detach the pid file names the exec verb itself.
func TestExecDetachAndPIDFile(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id, pid, _ := e.startExecTarget("d")

	pidFile := filepath.Join(e.dir, "exec.pid")
	start := time.Now()
	r, out := e.rtFiles("exec", "--detach", "--pid-file", pidFile, id, "sh", "-c", "sleep 2; echo detached-done")
	e.mustOK(r)
	if data, err := os.ReadFile(pidFile); err != nil {
		t.Fatalf("exec --detach wrote no pid file: %v", err)
	} else if p, _ := strconv.Atoi(strings.TrimSpace(string(data))); !alive(p) {
		t.Errorf("the process in exec --detach's pid file (%s) is not alive while the exec'd process runs", data)
	}
	if time.Since(start) > 20*time.Second {
		t.Errorf("exec --detach took %v: it must not wait for the process", time.Since(start))
	}
	e.waitOutput(out, "detached-done")
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("exec --detach wrote no pid file: %v", err)
	}
	got, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	if got <= 0 || got == pid {
		t.Errorf("exec --detach pid file holds %q; want a process standing for the exec'd one, not the container's %d", data, pid)
	}
	e.waitGone(got)

	// In the foreground, the pid file holds the exec verb's own PID.
	pidFile2 := filepath.Join(e.dir, "exec2.pid")
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, runtimeBin, "--root", e.root, "exec", "--pid-file", pidFile2, id, "true")
	if err := cmd.Run(); err != nil {
		t.Fatalf("exec --pid-file ... true: %v", err)
	}
	data, err = os.ReadFile(pidFile2)
	if err != nil {
		t.Fatalf("exec wrote no pid file: %v", err)
	}
	if isSkiff && strings.TrimSpace(string(data)) != strconv.Itoa(cmd.Process.Pid) {
		t.Errorf("exec pid file holds %s, want the exec verb's PID %d", data, cmd.Process.Pid)
	}

	// Signals to the exec verb reach the exec'd process.
	cmd = exec.CommandContext(ctx, runtimeBin, "--root", e.root, "exec", id, "sh", "-c", `trap "echo exec-got-term; exit 9" TERM; echo ready; while true; do sleep 1; done`)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := stdout.Read(buf)
	if !strings.Contains(string(buf[:n]), "ready") {
		t.Fatalf("exec'd process printed %q, want ready", buf[:n])
	}
	cmd.Process.Signal(syscall.SIGTERM)
	rest := make([]byte, 256)
	n, _ = stdout.Read(rest)
	err = cmd.Wait()
	if !strings.Contains(string(rest[:n]), "exec-got-term") || cmd.ProcessState.ExitCode() != 9 {
		t.Errorf("TERM to the exec verb: output %q, exit %d (%v); want exec-got-term and 9", rest[:n], cmd.ProcessState.ExitCode(), err)
	}

	e.mustOK(e.rt("delete", "--force", id))
}

// exec is refused, with a message, for containers that do not exist or do
// not run, and for a malformed process.json.
func TestExecRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	msg := e.mustFail(e.rt("exec", e.id("nope"), "true"))
	if !strings.Contains(msg, "does not exist") {
		t.Errorf("exec into an unknown container says %q, want it to say it does not exist", msg)
	}

	// A created container (not started yet) takes exec, as with runc,
	// inside the container already: the /proc it sees is its PID
	// namespace's (PID 1 is the container's init, not the guest's).
	cid := e.id("created")
	e.create(cid, e.bundle("created", sh(execInit)))
	r := e.rt("exec", cid, "sh", "-c", `cat /dev/shm/marker 2>/dev/null || echo no-marker; [ "$(readlink /proc/1/ns/pid)" = "$(readlink /proc/self/ns/pid)" ] && echo own-proc`)
	if r.code != 0 || r.stdout != "no-marker\nown-proc\n" {
		t.Errorf("exec into a created container: want it to run before the init did, in the container's mounts: %v", r)
	}
	e.mustOK(e.rt("delete", cid))

	id, pid, _ := e.startExecTarget("s")
	bad := filepath.Join(e.dir, "bad-process.json")
	os.WriteFile(bad, []byte(`{"args": [`), 0o644)
	msg = e.mustFail(e.rt("exec", "--process", bad, id))
	if isSkiff && !strings.Contains(msg, "process") {
		t.Errorf("exec with a malformed process.json says %q, want it to name the process file", msg)
	}
	e.mustFail(e.rt("exec", id))

	e.mustOK(e.rt("kill", id, "KILL"))
	e.waitStatus(id, "stopped")
	e.waitGone(pid)
	msg = e.mustFail(e.rt("exec", id, "true"))
	if !strings.Contains(msg, "stopped") {
		t.Errorf("exec into a stopped container says %q, want it to say the container is stopped", msg)
	}
	e.mustOK(e.rt("delete", id))
}
