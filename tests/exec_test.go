package tests

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// exec runs a process inside the container: in its mounts, PID namespace,
// hostname and cgroup; stdout and stderr apart, the exit status passed on,
// stdin relayed, runc's process flags honoured, --detach and --pid-file as
// conmon uses them, signals relayed. One container takes every exec, to
// spare VM boots; at the end, stopped, it refuses exec.
func TestExecInRunningContainer(t *testing.T) {
	e := e2e.NewEnv(t)
	id, pid, out := e.StartExecTarget("x")

	e.Step("stdio and exit status", func(e *e2e.Env) {
		r := e.RT("exec", id, "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 5")
		if r.Code != 5 {
			e.T.Errorf("exit status %d, want 5: %v", r.Code, r)
		}
		if r.Stdout != "to-stdout\n" || strings.TrimSpace(r.Stderr) != "to-stderr" {
			e.T.Errorf("stdout %q stderr %q, want each stream on its own", r.Stdout, r.Stderr)
		}
	})

	e.Step("the container's namespaces and cgroup", func(e *e2e.Env) {
		r := e.MustOK(e.RT("exec", id, "sh", "-c",
			`echo "marker=$(cat /dev/shm/marker)"; echo "init=$(tr '\0' ' ' </proc/1/cmdline)"; echo "host=$(hostname)"; echo "cgroup=$(cat /proc/self/cgroup)"`))
		kv := e2e.KeyValues(r.Stdout)
		e2e.WantKV(e.T, kv, "marker", "exec-init-marker")
		if !strings.Contains(kv["init"], "exec-init-marker") {
			e.T.Errorf("PID 1 seen by exec is %q, want the container's init (not in its PID namespace?)", kv["init"])
		}
		e2e.WantKV(e.T, kv, "host", e2e.ReadSpec(e.T, filepath.Join(e.Dir, "b-x")).Hostname)
		initKV := e2e.KeyValues(e.WaitOutput(out, "init-cgroup="))
		if kv["cgroup"] != initKV["init-cgroup"] {
			e.T.Errorf("exec'd process in cgroup %q, the container's init in %q", kv["cgroup"], initKV["init-cgroup"])
		}
	})

	e.Step("process flags", func(e *e2e.Env) {
		// --env, --cwd, --user, --no-new-privs, and flags conmon passes.
		r := e.MustOK(e.RT("exec", "--env", "FOO=bar", "--env", "BAZ=qux", "--cwd", "/tmp", "--user", "1000:1000",
			"--no-new-privs", "--tty=false", "--preserve-fds", "0", "--cap", "CAP_CHOWN", id,
			"sh", "-c", `echo "foo=$FOO"; echo "baz=$BAZ"; echo "pwd=$(pwd)"; echo "uid=$(id -u)"; echo "gid=$(id -g)"; grep NoNewPrivs /proc/self/status | tr -d ' \t' | tr : =`))
		e2e.WantKVs(e.T, e2e.KeyValues(r.Stdout), map[string]string{
			"foo": "bar", "baz": "qux", "pwd": "/tmp", "uid": "1000", "gid": "1000", "NoNewPrivs": "1",
		})
	})

	e.Step("stdin", func(e *e2e.Env) {
		r := e.RTIn(strings.NewReader("line one\nline two\n"), "exec", id, "cat")
		if r.Code != 0 || r.Stdout != "line one\nline two\n" {
			e.T.Errorf("cat through exec: %v", r)
		}
	})

	e.Step("killed by a signal", func(e *e2e.Env) {
		if r := e.RT("exec", id, "sh", "-c", "kill -9 $$"); r.Code != 137 {
			e.T.Errorf("exec'd process killed by SIGKILL: exit %d, want 137: %v", r.Code, r)
		}
	})

	e.Step("missing command", func(e *e2e.Env) {
		// runc's message and status.
		r := e.RT("exec", id, "no-such-command")
		if msg := e.MustFail(r); !strings.Contains(msg, "executable file not found") {
			e.T.Errorf("exec of a missing command says %q, want it to say the executable was not found", msg)
		}
		if r.Code != 255 {
			e.T.Errorf("exec of a missing command exited %d, want 255 as runc", r.Code)
		}
	})

	e.Step("process file", func(e *e2e.Env) {
		// --process: the whole process from a file.
		data, _ := json.Marshal(specs.Process{
			Args: []string{"sh", "-c", `echo "from-file=$WHO"; exit 4`},
			Env:  []string{"PATH=/bin", "WHO=process.json"},
			Cwd:  "/",
		})
		r := e.RT("exec", "--process", e.WriteFile("process.json", string(data)), id)
		if r.Code != 4 || e2e.KeyValues(r.Stdout)["from-file"] != "process.json" {
			e.T.Errorf("exec --process: want from-file=process.json and status 4: %v", r)
		}
		bad := e.WriteFile("bad-process.json", `{"args": [`)
		if msg := e.MustFail(e.RT("exec", "--process", bad, id)); e2e.IsSkiff() && !strings.Contains(msg, "process") {
			e.T.Errorf("exec with a malformed process.json says %q, want it to name the process file", msg)
		}
		e.MustFail(e.RT("exec", id)) // no process at all
	})

	e.Step("detach and pid file", func(e *e2e.Env) {
		// exec --detach returns while the process runs on (here: until
		// told to end), its output still relayed; its pid file names a
		// process that lives as long as the exec'd one.
		pidFile := filepath.Join(e.Dir, "exec.pid")
		r, detachedOut := e.RTFiles("exec", "--detach", "--pid-file", pidFile, id, "sh", "-c",
			"while [ ! -e /dev/shm/detached-go ]; do sleep 0.2; done; echo detached-done")
		e.MustOK(r)
		got := e.ReadPIDFile(pidFile)
		if got == pid {
			e.T.Errorf("exec --detach pid file holds the container's PID %d; want a process standing for the exec'd one", pid)
		}
		if !e2e.Alive(got) {
			e.T.Errorf("the process in exec --detach's pid file (%d) is not alive while the exec'd process runs", got)
		}
		e.MustOK(e.RT("exec", id, "touch", "/dev/shm/detached-go"))
		e.WaitOutput(detachedOut, "detached-done")
		e.WaitGone(got)

		// In the foreground, the pid file holds the exec verb's own PID.
		pidFile2 := filepath.Join(e.Dir, "exec2.pid")
		ctx, cancel := context.WithTimeout(context.Background(), e2e.CmdTimeout)
		defer cancel()
		cmd := e.Command(ctx, "exec", "--pid-file", pidFile2, id, "true")
		if err := cmd.Run(); err != nil {
			e.T.Fatalf("exec --pid-file ... true: %v", err)
		}
		if got := e.ReadPIDFile(pidFile2); e2e.IsSkiff() && got != cmd.Process.Pid {
			e.T.Errorf("exec pid file holds %d, want the exec verb's PID %d", got, cmd.Process.Pid)
		}
	})

	e.Step("signals relayed", func(e *e2e.Env) {
		// Signals to the exec verb reach the exec'd process.
		ctx, cancel := context.WithTimeout(context.Background(), e2e.CmdTimeout)
		defer cancel()
		cmd := e.Command(ctx, "exec", id, "sh", "-c", `trap "echo exec-got-term; exit 9" TERM; echo ready; while true; do sleep 1; done`)
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			e.T.Fatal(err)
		}
		buf := make([]byte, 64)
		n, _ := stdout.Read(buf)
		if !strings.Contains(string(buf[:n]), "ready") {
			e.T.Fatalf("exec'd process printed %q, want ready", buf[:n])
		}
		cmd.Process.Signal(syscall.SIGTERM)
		rest := make([]byte, 256)
		n, _ = stdout.Read(rest)
		err := cmd.Wait()
		if !strings.Contains(string(rest[:n]), "exec-got-term") || cmd.ProcessState.ExitCode() != 9 {
			e.T.Errorf("TERM to the exec verb: output %q, exit %d (%v); want exec-got-term and 9", rest[:n], cmd.ProcessState.ExitCode(), err)
		}
	})

	// The container itself is unaffected by all of this.
	if st := e.State(id); st.Status != "running" {
		t.Errorf("container %s after the execs: %s, want running", id, st.Status)
	}
	e.MustOK(e.RT("kill", id, "TERM"))
	e.WaitStatus(id, "stopped")
	e.WaitGone(pid)
	e.Step("refused once stopped", func(e *e2e.Env) {
		if msg := e.MustFail(e.RT("exec", id, "true")); !strings.Contains(msg, "stopped") {
			e.T.Errorf("exec into a stopped container says %q, want it to say the container is stopped", msg)
		}
	})
	e.MustOK(e.RT("delete", id))
}

// exec is refused, with a message, for a container that does not exist;
// a created container (not started yet) takes exec, as with runc, inside
// the container already: the /proc it sees is its PID namespace's (PID 1
// is the container's init, not the guest's).
func TestExecBeforeStartAndUnknown(t *testing.T) {
	e := e2e.NewEnv(t)
	msg := e.MustFail(e.RT("exec", e.ID("nope"), "true"))
	if !strings.Contains(msg, "does not exist") {
		t.Errorf("exec into an unknown container says %q, want it to say it does not exist", msg)
	}

	cid := e.ID("created")
	e.Create(cid, e.Bundle("created", e2e.Sh(e2e.ExecTarget)))
	r := e.RT("exec", cid, "sh", "-c", `cat /dev/shm/marker 2>/dev/null || echo no-marker; [ "$(readlink /proc/1/ns/pid)" = "$(readlink /proc/self/ns/pid)" ] && echo own-proc`)
	if r.Code != 0 || r.Stdout != "no-marker\nown-proc\n" {
		t.Errorf("exec into a created container: want it to run before the init did, in the container's mounts: %v", r)
	}
	e.MustOK(e.RT("delete", cid))
}
