package agent_test

import (
	"io"
	"strings"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// exec runs args in a running container and returns what it printed.
func (v *vm) exec(id, execID string, args ...string) (result, error) {
	var res result
	p := &specs.Process{Args: args, Env: []string{"PATH=/bin"}, Cwd: "/"}
	if err := v.call(protocol.MethodExecProcess, protocol.ExecProcessRequest{ID: id, ExecID: execID, Process: p}, nil); err != nil {
		return res, err
	}
	var wg sync.WaitGroup
	outs := make([]string, 3)
	for i, name := range []string{protocol.Stdout, protocol.Stderr} {
		st, err := v.stream(protocol.MethodOpenStdio, protocol.OpenStdioRequest{ID: id, ExecID: execID, Stream: name}, nil)
		if err != nil {
			return res, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, _ := io.ReadAll(st)
			outs[i+1] = string(b)
		}()
	}
	var wr protocol.WaitProcessResponse
	if err := v.call(protocol.MethodWaitProcess, protocol.WaitProcessRequest{ID: id, ExecID: execID}, &wr); err != nil {
		return res, err
	}
	wg.Wait()
	return result{wr.ExitStatus, outs[1], outs[2]}, nil
}

// podSpec is a long-running container's spec with its own mount and PID
// namespaces, and network, IPC and UTS namespaces named by joinPath
// (none: its own).
func podSpec(hostname, joinPath string) *specs.Spec {
	s := baseSpec("sleep", "1000")
	s.Hostname = hostname
	s.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}}
	for _, t := range []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace} {
		ns := specs.LinuxNamespace{Type: t}
		if joinPath != "" {
			ns.Path = joinPath + "/" + map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: "net", specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts"}[t]
		}
		s.Linux.Namespaces = append(s.Linux.Namespaces, ns)
	}
	return s
}

// A pod in one guest: a sandbox container, and a container that joins
// its network, IPC and UTS namespaces (the spec's paths are the host's,
// bogus here) and keeps its own mount and PID namespaces and cgroup; it
// is removed and created again under the same ID, and outlives the
// sandbox's removal.
func TestVMPod(t *testing.T) {
	needVM(t)
	// A NIC the sandbox is not given: every container would get a
	// network namespace of its own, so a shared one is a joined one.
	v := bootVM(t, "-netdev", "hubport,id=n0,hubid=0", "-device", "virtio-net-pci,netdev=n0")
	create := func(id, sandbox string, spec *specs.Spec) error {
		req := protocol.CreateContainerRequest{ID: id, Spec: spec, Shares: []protocol.Share{rootShare}, Sandbox: sandbox}
		if err := v.call(protocol.MethodCreateContainer, req, nil); err != nil {
			return err
		}
		return v.call(protocol.MethodStartContainer, protocol.StartContainerRequest{ID: id}, nil)
	}
	const bogus = "/proc/4242/ns"
	must(t, create("pod", "", podSpec("podhost", "")))
	must(t, create("app", "pod", podSpec("apphost", bogus)))

	const show = `hostname; for n in net ipc uts mnt pid; do readlink /proc/self/ns/$n; done`
	nsOf := func(id, execID string) []string {
		t.Helper()
		r, err := v.exec(id, execID, "sh", "-c", show)
		if err != nil || r.status != 0 {
			t.Fatalf("exec in %s: %+v %v", id, r, err)
		}
		return strings.Fields(r.stdout)
	}
	samePod := func(what string, pod, app []string) {
		t.Helper()
		if len(pod) != 6 || len(app) != 6 {
			t.Fatalf("%s: pod %q, app %q", what, pod, app)
		}
		if pod[0] != "podhost" || app[0] != "podhost" {
			t.Errorf("%s: hostnames %q and %q, want the sandbox's podhost in both", what, pod[0], app[0])
		}
		for i, n := range []string{"net", "ipc", "uts"} {
			if pod[i+1] != app[i+1] {
				t.Errorf("%s: %s namespaces differ: %s and %s", what, n, pod[i+1], app[i+1])
			}
		}
		for i, n := range []string{"mnt", "pid"} {
			if pod[i+4] == app[i+4] {
				t.Errorf("%s: %s namespace shared: %s", what, n, pod[i+4])
			}
		}
	}
	pod, app := nsOf("pod", "e1"), nsOf("app", "e1")
	t.Logf("sandbox: %q; joined: %q", pod, app)
	samePod("joined", pod, app)

	// 127.0.0.1 is the pod's: a listener in one container is reached
	// from the other.
	listen := make(chan result, 1)
	go func() {
		r, err := v.exec("pod", "listen", "nc", "-l", "-p", "7777")
		if err != nil {
			t.Errorf("listen: %v", err)
		}
		listen <- r
	}()
	r, err := v.exec("app", "dial", "sh", "-c", `for i in $(seq 100); do echo ping | nc -w 5 127.0.0.1 7777 && exit 0; sleep 0.1; done; exit 1`)
	if err != nil || r.status != 0 {
		t.Errorf("dial from app to pod: %+v %v", r, err)
		v.call(protocol.MethodSignalProcess, protocol.SignalProcessRequest{ID: "pod", ExecID: "listen", Signal: 9}, nil)
	}
	if r := <-listen; r.stdout != "ping\n" {
		t.Errorf("pod's listener got %+v", r)
	}

	// Each container has a cgroup of its own.
	cgroupOf := func(id string) bool {
		t.Helper()
		r, err := v.exec("pod", "cg-"+id, "test", "-d", "/sys/fs/cgroup/skiff/"+id)
		if err != nil {
			t.Fatalf("look for the cgroup of %s: %v", id, err)
		}
		return r.status == 0
	}
	if !cgroupOf("pod") || !cgroupOf("app") {
		t.Fatal("the pod's containers have no cgroups of their own")
	}

	// Removing a container kills what runs in it (its waiter sees
	// SIGKILL), removes its cgroup and frees its ID.
	waited := make(chan protocol.WaitProcessResponse, 1)
	go func() {
		var wr protocol.WaitProcessResponse
		if err := v.call(protocol.MethodWaitProcess, protocol.WaitProcessRequest{ID: "app"}, &wr); err != nil {
			t.Errorf("wait for app: %v", err)
		}
		waited <- wr
	}()
	must(t, v.call(protocol.MethodRemoveContainer, protocol.RemoveContainerRequest{ID: "app"}, nil))
	if wr := <-waited; wr.ExitStatus != 137 {
		t.Errorf("removed app's status %d, want 137", wr.ExitStatus)
	}
	if cgroupOf("app") {
		t.Error("the removed container's cgroup is still there")
	}
	if err := v.call(protocol.MethodStartContainer, protocol.StartContainerRequest{ID: "app"}, nil); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("start of a removed container: %v", err)
	}
	must(t, create("app", "pod", podSpec("apphost", bogus)))
	samePod("created again", pod, nsOf("app", "e2"))

	// The sandbox removed, its namespaces live on in the other container
	// (and so does the share both named).
	must(t, v.call(protocol.MethodRemoveContainer, protocol.RemoveContainerRequest{ID: "pod"}, nil))
	if got := nsOf("app", "e3"); got[0] != "podhost" || got[1] != pod[1] || got[2] != pod[2] || got[3] != pod[3] {
		t.Errorf("after the sandbox's removal: %q, want %q's hostname and namespaces", got, pod)
	}
	// The last holder of the share gone, the next container mounts it
	// again.
	must(t, v.call(protocol.MethodRemoveContainer, protocol.RemoveContainerRequest{ID: "app"}, nil))
	if got, err := v.run("again", baseSpec("cat", "/etc/passwd"), nil, "", nil); err != nil || got.status != 0 || !strings.HasPrefix(got.stdout, "root:") {
		t.Errorf("a container after the last was removed: %+v %v", got, err)
	}

	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"unknown sandbox", create("orphan", "nosuch", podSpec("", bogus)), "sandbox container nosuch is not in this guest"},
		{"remove unknown", v.call(protocol.MethodRemoveContainer, protocol.RemoveContainerRequest{ID: "nosuch"}, nil), "container nosuch not found"},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error with %q", tc.name, tc.err, tc.want)
		}
	}
}
