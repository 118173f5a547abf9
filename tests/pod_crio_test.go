package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// A pod as CRI-O runs it (runtime_type "oci"): every container through
// conmon, with CRI-O's annotations; conmon calls `RUNTIME --root=R create`,
// waits on the PID in the pid file, writes the container's output to its
// log and its exit code to the exit directory. CRI-O is not packaged for
// Debian 12: this drives conmon as CRI-O does.

// crioAnnotations are the annotations CRI-O puts on a pod's specs.
func crioAnnotations(kind, sandboxID string) func(*specs.Spec) {
	return func(s *specs.Spec) {
		s.Annotations = map[string]string{"io.kubernetes.cri-o.ContainerType": kind}
		if sandboxID != "" {
			s.Annotations["io.kubernetes.cri-o.SandboxID"] = sandboxID
		}
	}
}

func TestPodThroughConmonAsCRIO(t *testing.T) {
	conmon, err := exec.LookPath("conmon")
	if err != nil {
		t.Fatalf("conmon is not installed (scripts/install-deps.sh installs it): %v", err)
	}
	e := e2e.NewEnv(t)
	ns := e2e.NewNetns(t)
	exits, socks := e.Mkdir("exits"), e.Mkdir("socks")

	// run starts a container through conmon and returns its PID and the
	// path of its log.
	run := func(id, bundle string) (int, string) {
		pidFile, log := filepath.Join(e.Dir, id+".pid"), filepath.Join(e.Dir, id+".log")
		cmd := exec.Command(conmon, "-b", bundle, "-c", id, "-u", id, "-n", id, "-r", e2e.Bin(),
			"--runtime-arg", "--root="+e.Root, "-p", pidFile, "-P", filepath.Join(e.Dir, id+".conmon.pid"),
			"-l", "k8s-file:"+log, "--exit-dir", exits, "--socket-dir-path", socks, "--log-level", "debug")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("conmon for %s: %v\n%s", id, err, out)
		}
		e2e.Poll(t, func() bool { _, err := os.Stat(pidFile); return err == nil },
			func() string { return "conmon never wrote " + pidFile })
		pid := e.ReadPIDFile(pidFile)
		if b, err := os.ReadFile(filepath.Join(e.Dir, id+".conmon.pid")); err == nil {
			if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				e.Track(p)
			}
		}
		e.MustOK(e.RT("start", id))
		return pid, log
	}
	exitCode := func(id string) string {
		path := filepath.Join(exits, id)
		e2e.Poll(t, func() bool { b, err := os.ReadFile(path); return err == nil && len(b) > 0 },
			func() string { return "conmon wrote no exit file for " + id })
		b, _ := os.ReadFile(path)
		return strings.TrimSpace(string(b))
	}

	sb := e.ID("crio-pod")
	sbPID, _ := run(sb, e.Bundle("crio-pod", e2e.Sh(termLoop), podSandbox(ns.Path), crioAnnotations("sandbox", "")))
	member := func(name, script string) string {
		return e.Bundle(name, e2e.Sh(script), podMember(sb, sbPID), crioAnnotations("container", sb))
	}

	e.Step("a container's output and exit code", func(e *e2e.Env) {
		id := e.ID("step")
		pid, log := run(id, member("step", `echo "hostname=$(hostname)"; exit 3`))
		if code := exitCode(id); code != "3" {
			e.T.Errorf("exit file of the pod's container says %q, want 3", code)
		}
		e.WaitGone(pid)
		if out := e.WaitOutput(log, "hostname="); !strings.Contains(out, "hostname=the-pod") {
			e.T.Errorf("the container's log %q: want its output with the pod's hostname", out)
		}
		if st := e.State(sb); st.Status != "running" {
			e.T.Errorf("the sandbox after its container exited: %q", st.Status)
		}
		e.MustOK(e.RT("delete", id))
	})

	e.Step("the sandbox stops last", func(e *e2e.Env) {
		e.MustOK(e.RT("kill", sb, "TERM"))
		if code := exitCode(sb); code != "0" {
			e.T.Errorf("exit file of the sandbox says %q, want 0", code)
		}
		e.WaitGone(sbPID)
		e.MustOK(e.RT("delete", sb))
	})
}
