package tests

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// A Kubernetes pod as CRI runtimes drive a runc-style runtime: a sandbox
// container (the pause container) in the pod's network namespace, then
// the pod's containers, whose specs name the sandbox's namespaces by the
// path /proc/<sandbox PID>/ns/... and carry containerd's annotations.
// runc passes the same test (the paths are real namespaces there).

// podSandbox is the sandbox container's spec: its own IPC and UTS, the
// pod's hostname, the pod's network namespace.
func podSandbox(netns string) func(*specs.Spec) {
	return func(s *specs.Spec) {
		e2e.WithNetns(netns)(s)
		s.Hostname = "the-pod"
		s.Annotations = map[string]string{"io.kubernetes.cri.container-type": "sandbox"}
	}
}

// podMember is a pod container's spec: the sandbox's network, IPC and UTS
// namespaces by path, containerd's annotations naming the sandbox.
func podMember(sandboxID string, sandboxPID int) func(*specs.Spec) {
	return func(s *specs.Spec) {
		s.Hostname = ""
		for i, n := range s.Linux.Namespaces {
			switch n.Type {
			case specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace:
				s.Linux.Namespaces[i].Path = fmt.Sprintf("/proc/%d/ns/%s", sandboxPID, map[specs.LinuxNamespaceType]string{
					specs.NetworkNamespace: "net", specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts"}[n.Type])
			}
		}
		s.Annotations = map[string]string{
			"io.kubernetes.cri.container-type": "container",
			"io.kubernetes.cri.sandbox-id":     sandboxID,
		}
	}
}

func TestPod(t *testing.T) {
	e := e2e.NewEnv(t)
	ns := e2e.NewNetns(t)
	sb := e.ID("pod")
	sbPID, _ := e.CreateStarted(sb, e.Bundle("pod", e2e.Sh(termLoop), podSandbox(ns.Path)), "started")

	// A server in one container, its client in another, over 127.0.0.1:
	// the pod's network.
	server := e.ID("server")
	serverPID, serverOut := e.CreateStarted(server, e.Bundle("server",
		e2e.Sh(`echo "hostname=$(hostname)"; echo started; nc -l -p 7777 -e sh -c 'echo hello-from-server'; `+termLoop),
		podMember(sb, sbPID)), "started")

	e.Step("one sandbox", func(e *e2e.Env) {
		st := e.State(server)
		if st.Status != "running" || st.Pid != serverPID {
			e.T.Errorf("pod container: status %q pid %d, want running with pid %d", st.Status, st.Pid, serverPID)
		}
		if got := e.WaitOutput(serverOut, "hostname="); !strings.Contains(got, "hostname=the-pod") {
			e.T.Errorf("the pod container's hostname: %q, want the pod's (the-pod)", got)
		}
		if !e2e.IsSkiff() {
			return
		}
		if st.Annotations["io.github.skiff.sandbox"] != sb {
			e.T.Errorf("state annotations %v: want the container's sandbox %s", st.Annotations, sb)
		}
		n := 0
		for _, cmd := range e2e.QEMUProcesses() {
			if strings.Contains(string(cmd), e.Root+"/") {
				n++
			}
		}
		if n != 1 {
			e.T.Errorf("%d QEMU processes for the pod, want 1", n)
		}
		// The host process standing for a pod container is in the pod's
		// network namespace, as tools that inspect it expect.
		want, err1 := os.Stat(ns.Path)
		got, err2 := os.Stat(fmt.Sprintf("/proc/%d/ns/net", serverPID))
		if err1 != nil || err2 != nil || !os.SameFile(want, got) {
			e.T.Errorf("/proc/%d/ns/net is not the pod's network namespace %s (%v, %v)", serverPID, ns.Path, err1, err2)
		}
	})

	e.Step("localhost between containers", func(e *e2e.Env) {
		r := e.RT("run", "--bundle", e.Bundle("client", e2e.Sh(`nc 127.0.0.1 7777`), podMember(sb, sbPID)), e.ID("client"))
		if r.Code != 0 || !strings.Contains(r.Stdout, "hello-from-server") {
			e.T.Errorf("client over 127.0.0.1: %v", r)
		}
	})

	e.Step("exit status of a pod container", func(e *e2e.Env) {
		r := e.RT("run", "--bundle", e.Bundle("exits", e2e.Sh(`exit 3`), podMember(sb, sbPID)), e.ID("exits"))
		if r.Code != 3 {
			e.T.Errorf("a pod container exiting 3: %v", r)
		}
	})

	e.Step("out of memory in one container", func(e *e2e.Env) {
		r := e.RT("run", "--bundle", e.Bundle("hog", e2e.Sh(`dd if=/dev/zero of=/dev/shm/fill bs=1M count=60 2>/dev/null && echo survived`),
			podMember(sb, sbPID), func(s *specs.Spec) {
				limit := int64(32 << 20)
				s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
			}), e.ID("hog"))
		if r.Code == 0 || strings.Contains(r.Stdout, "survived") {
			e.T.Errorf("a container over its 32 MiB limit: %v; want it killed", r)
		}
		if st := e.State(server); st.Status != "running" {
			e.T.Errorf("its sibling after the OOM: %q, want running", st.Status)
		}
		if st := e.State(sb); st.Status != "running" {
			e.T.Errorf("the sandbox after the OOM: %q, want running", st.Status)
		}
	})

	e.Step("a container larger than the pod's VM", func(e *e2e.Env) {
		if !e2e.IsSkiff() {
			return // runc has no VM to outgrow
		}
		big := e.Bundle("big", []string{"/bin/true"}, podMember(sb, sbPID), func(s *specs.Spec) {
			limit := int64(64 << 30)
			s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
		})
		id := e.ID("big")
		if msg := e.MustFail(e.RT("create", "--bundle", big, id)); !strings.Contains(msg, "MiB of memory") {
			e.T.Errorf("refusal does not name the memory limit: %q", msg)
		}
		e.AssertNoStateDir(id, "a refused create")
		if st := e.State(sb); st.Status != "running" {
			e.T.Errorf("the sandbox after a refused container: %q", st.Status)
		}
	})

	e.Step("delete one, the pod runs on; create it again", func(e *e2e.Env) {
		e.MustOK(e.RT("kill", server, "TERM"))
		e.WaitStatus(server, "stopped")
		e.MustOK(e.RT("delete", server))
		if st := e.State(sb); st.Status != "running" {
			e.T.Errorf("the sandbox after one container was deleted: %q", st.Status)
		}
		again, out := e.CreateStarted(server, e.Bundle("again", e2e.Sh(`echo started; `+termLoop), podMember(sb, sbPID)), "started")
		e.MustOK(e.RT("exec", server, "true"))
		e.MustOK(e.RT("kill", server, "TERM"))
		e.WaitOutput(out, "got-term")
		e.WaitGone(again)
		e.MustOK(e.RT("delete", server))
	})

	e.Step("the sandbox goes last", func(e *e2e.Env) {
		e.MustOK(e.RT("kill", sb, "TERM"))
		e.WaitStatus(sb, "stopped")
		e.MustOK(e.RT("delete", sb))
		e.WaitGone(sbPID)
	})
}

// A VM that dies under a pod stops every container of it (137 for each
// host process), and delete --force cleans every one up, the sandbox
// first or last.
func TestPodVMDies(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	ns := e2e.NewNetns(t)
	sb := e.ID("pod")
	sbPID, _ := e.CreateStarted(sb, e.Bundle("pod", e2e.Sh(termLoop), podSandbox(ns.Path)), "started")
	c := e.ID("member")
	cPID, _ := e.CreateStarted(c, e.Bundle("member", e2e.Sh(`echo started; `+termLoop), podMember(sb, sbPID)), "started")
	qemu := e.QEMUPID(sb)
	if err := syscall.Kill(qemu, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.WaitStatus(c, "stopped")
	e.WaitStatus(sb, "stopped")
	// Callers clean up in any order after a crash: the sandbox first.
	e.ForceDelete(sb, sbPID)
	e.ForceDelete(c, cPID)
}
