package cri

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	podHostname = "tekton-pod"
	// exitWait bounds the wait for a container to exit by itself.
	exitWait = 2 * time.Minute
	// settle is how long clean-up may take after RemovePodSandbox
	// returns (shims and VMs exit asynchronously).
	settle = 15 * time.Second
	// Containers that run until stopped: PID 1 exits 0 on SIGTERM.
	sleeper = `trap 'exit 0' TERM; sleep 2147483647 & wait`
	// A TCP server on the pod's 127.0.0.1:7777 that answers "pong".
	server = `trap 'exit 0' TERM; nc -ll -p 7777 -e /bin/echo pong & wait`
)

// pod is one pod sandbox of a test and the steps run on it. Each step is
// a subtest; a step whose prerequisite failed is skipped, saying which.
type pod struct {
	t          *testing.T
	handler    string
	id         string
	dir        string            // volume and logs
	volume     string            // the emptyDir-like volume at /workspace
	containers map[string]string // name → ID of its current container
	ids        []string          // every ID the pod had, the sandbox's first
	before     snapshot          // what existed before the pod
	ok         map[string]bool
}

// snapshot is what a runtime root, containerd's netns dir, the mounts and
// qemu processes held at one time: a pod's leak check compares against it.
type snapshot struct {
	rootEntries []string
	netns       []string
	mounts      []string
	qemu        []int
}

func takeSnapshot(handler string) snapshot {
	var s snapshot
	ents, _ := os.ReadDir(runtimeRoots[handler])
	for _, e := range ents {
		s.rootEntries = append(s.rootEntries, e.Name())
	}
	ents, _ = os.ReadDir(netnsDir())
	for _, e := range ents {
		s.netns = append(s.netns, e.Name())
	}
	s.mounts = mountsUnder(tmpDir)
	for _, q := range qemuProcesses(filepath.Dir(runtimeRoots["skiff"])) {
		s.qemu = append(s.qemu, q.pid)
	}
	return s
}

func newPod(t *testing.T, handler, name string) *pod {
	dir := filepath.Join(tmpDir, "pods", name)
	p := &pod{
		t: t, handler: handler, dir: dir, volume: filepath.Join(dir, "workspace"),
		containers: map[string]string{}, ok: map[string]bool{},
		before: takeSnapshot(handler),
	}
	for _, d := range []string{p.volume, filepath.Join(dir, "logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(p.forceCleanup)
	return p
}

// step runs f as subtest name unless one of deps failed or was skipped.
func (p *pod) step(name string, deps []string, f func(t *testing.T)) bool {
	for _, d := range deps {
		if !p.ok[d] {
			p.t.Run(name, func(t *testing.T) { t.Skipf("not run: step %q did not pass", d) })
			return false
		}
	}
	p.ok[name] = p.t.Run(name, f)
	return p.ok[name]
}

func (p *pod) run(t *testing.T) {
	t.Helper()
	cfg := podConfig("pod-"+p.handler+"-"+filepath.Base(p.dir), fmt.Sprintf("uid-%d-%s", os.Getpid(), filepath.Base(p.dir)), podHostname, filepath.Join(p.dir, "logs"))
	c, cancel := ctx()
	defer cancel()
	start := time.Now()
	r, err := cri.rt.RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: p.handler})
	if err != nil {
		t.Fatalf("RunPodSandbox (%s): %v", p.handler, err)
	}
	p.id = r.PodSandboxId
	p.ids = append(p.ids, p.id)
	t.Logf("pod sandbox %s ready in %.2fs", p.id, time.Since(start).Seconds())
	if len(p.id) != 64 {
		t.Errorf("pod sandbox ID %q is not containerd's 64 hex characters", p.id)
	}
	st, err := cri.rt.PodSandboxStatus(c, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.id})
	if err != nil {
		t.Fatalf("PodSandboxStatus: %v", err)
	}
	if st.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("pod sandbox state %s, want SANDBOX_READY", st.Status.State)
	}
}

// create creates and starts a container of the pod.
func (p *pod) create(t *testing.T, name string, attempt uint32, script string) string {
	t.Helper()
	c, cancel := ctx()
	defer cancel()
	cfg := containerConfig(name, attempt, script, p.volume)
	r, err := cri.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{
		PodSandboxId:  p.id,
		Config:        cfg,
		SandboxConfig: podConfig("pod-"+p.handler+"-"+filepath.Base(p.dir), fmt.Sprintf("uid-%d-%s", os.Getpid(), filepath.Base(p.dir)), podHostname, filepath.Join(p.dir, "logs")),
	})
	if err != nil {
		t.Fatalf("CreateContainer %s: %v", name, err)
	}
	p.containers[name] = r.ContainerId
	p.ids = append(p.ids, r.ContainerId)
	if _, err := cri.rt.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: r.ContainerId}); err != nil {
		t.Fatalf("StartContainer %s: %v", name, err)
	}
	return r.ContainerId
}

// runToCompletion creates a container and waits for it to exit with want.
func (p *pod) runToCompletion(t *testing.T, name, script string, want int32) {
	t.Helper()
	id := p.create(t, name, 0, script)
	st, err := cri.waitExited(id, exitWait)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if st.ExitCode != want {
		t.Fatalf("%s exited %d (reason %q, message %q), want %d; its log:\n%s", name, st.ExitCode, st.Reason, st.Message, want, p.log(name, 0))
	}
}

func (p *pod) log(name string, attempt uint32) string {
	data, _ := os.ReadFile(filepath.Join(p.dir, "logs", fmt.Sprintf("%s.%d.log", name, attempt)))
	return string(data)
}

// expectRunning fails unless every named container is running.
func (p *pod) expectRunning(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		st, err := cri.status(p.containers[n])
		if err != nil {
			t.Errorf("ContainerStatus %s: %v", n, err)
			continue
		}
		if st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("%s is %s (exit code %d, reason %q), want CONTAINER_RUNNING; its log:\n%s", n, st.State, st.ExitCode, st.Reason, p.log(n, st.Metadata.GetAttempt()))
		}
	}
}

// exec runs script in a container and checks its stdout and exit code.
func (p *pod) exec(t *testing.T, name, script, wantOut string, wantCode int32) {
	t.Helper()
	out, errOut, code, err := cri.execSync(p.containers[name], script)
	if err != nil {
		t.Errorf("ExecSync %q in %s: %v", script, name, err)
		return
	}
	if out != wantOut || code != wantCode {
		t.Errorf("ExecSync %q in %s: stdout %q, exit code %d (stderr %q); want %q, %d", script, name, out, code, errOut, wantOut, wantCode)
	}
}

// qemuOfPod lists the qemu processes under skiff's root that were not
// there before the pod.
func (p *pod) qemuOfPod() []proc {
	var qs []proc
	for _, q := range qemuProcesses(filepath.Dir(runtimeRoots["skiff"])) {
		if !slices.Contains(p.before.qemu, q.pid) {
			qs = append(qs, q)
		}
	}
	return qs
}

func (p *pod) expectQemu(t *testing.T) {
	t.Helper()
	want := 0
	if p.handler == "skiff" {
		want = 1
	}
	if qs := p.qemuOfPod(); len(qs) != want {
		var l []string
		for _, q := range qs {
			l = append(l, fmt.Sprintf("%d: %.200s", q.pid, q.cmdline))
		}
		t.Errorf("%d qemu processes for the pod, want %d:\n  %s", len(qs), want, strings.Join(l, "\n  "))
	}
}

// stopAndRemove stops and removes the pod, checks that every container
// reports exited in between, and that nothing of the pod is left.
func (p *pod) stopAndRemove(t *testing.T) {
	t.Helper()
	c, cancel := ctx()
	defer cancel()
	if _, err := cri.rt.StopPodSandbox(c, stopPodRequest(p.id)); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	st, err := cri.rt.PodSandboxStatus(c, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.id})
	if err != nil {
		t.Errorf("PodSandboxStatus after StopPodSandbox: %v", err)
	} else if st.Status.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("pod sandbox %s after StopPodSandbox, want SANDBOX_NOTREADY", st.Status.State)
	}
	cs, err := cri.rt.ListContainers(c, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: p.id}})
	if err != nil {
		t.Errorf("ListContainers: %v", err)
	} else {
		for _, ct := range cs.Containers {
			if ct.State != runtimeapi.ContainerState_CONTAINER_EXITED {
				t.Errorf("container %s is %s after StopPodSandbox", ct.Metadata.Name, ct.State)
			}
		}
	}
	if _, err := cri.rt.RemovePodSandbox(c, removePodRequest(p.id)); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	if _, err := cri.rt.PodSandboxStatus(c, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.id}); err == nil {
		t.Errorf("PodSandboxStatus still answers after RemovePodSandbox")
	}
	removed := p.id
	p.id = ""
	var leaks []string
	waitUntil(settle, func() bool {
		leaks = p.leftovers()
		return len(leaks) == 0
	})
	if len(leaks) > 0 {
		t.Errorf("left behind %s after RemovePodSandbox of %s:\n  %s%s", settle, removed, strings.Join(leaks, "\n  "), containerdSaid(leaks))
	}
}

// inode is the inode number of a file (a namespace's, through its nsfs link).
func inode(path string) uint64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0
	}
	return st.Ino
}

// netnsDir is where containerd mounts pods' network namespaces
// (netns_mounts_under_state_dir).
func netnsDir() string { return filepath.Join(tmpDir, "state", "io.containerd.grpc.v1.cri", "netns") }

// expectLeakCheckSees fails unless leftovers, run on the live pod, finds
// each kind of thing it checks: otherwise its silence proves nothing.
func (p *pod) expectLeakCheckSees(t *testing.T) {
	t.Helper()
	live := "\n" + strings.Join(p.leftovers(), "\n")
	kinds := []string{"process", "mount", "runtime state", "containerd state", "network namespace"}
	if p.handler == "skiff" {
		kinds = append(kinds, "qemu")
	} else {
		// runc makes a host cgroup per container; skiff may keep its
		// containers' cgroups in the guest only.
		kinds = append(kinds, "cgroup")
	}
	for _, k := range kinds {
		if !strings.Contains(live, "\n"+k+" ") {
			t.Errorf("the leak check sees no %s of the live pod: it would miss a leak of one; it sees:%s", k, strings.ReplaceAll(live, "\n", "\n  "))
		}
	}
}

var idPattern = regexp.MustCompile(`[0-9a-f]{64}`)

// containerdSaid returns containerd's errors and warnings about the IDs
// named in leaks: why the runtime's delete failed, from the runtime's own
// log.json as the shim reports it.
func containerdSaid(leaks []string) string {
	ids := map[string]bool{}
	for _, l := range leaks {
		for _, id := range idPattern.FindAllString(l, -1) {
			ids[id] = true
		}
	}
	data, _ := os.ReadFile(filepath.Join(tmpDir, "containerd.log"))
	var out []string
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		if !strings.Contains(l, "level=error") && !strings.Contains(l, "level=warning") {
			continue
		}
		for id := range ids {
			if strings.Contains(l, id) {
				out = append(out, l)
				// The shim's clean-up of a dead shim logs the runtime's
				// errors on the lines after, without the ID.
				for j := i + 1; j < len(lines) && j <= i+3; j++ {
					if strings.Contains(lines[j], "cleanup warnings") {
						out = append(out, lines[j])
					}
				}
				break
			}
		}
	}
	if len(out) == 0 {
		return ""
	}
	return "\ncontainerd said:\n  " + strings.Join(out, "\n  ")
}

// leftovers lists what is left of the pod: processes naming one of its IDs
// or the runtime's root (shims, skiff's host processes, qemu), mounts below
// the temp dir or naming an ID, the runtime's state dirs, containerd's task
// and CRI dirs, network namespaces, host cgroups named by an ID; compared
// with the pod's start.
func (p *pod) leftovers() []string {
	var l []string
	root := runtimeRoots[p.handler]
	for _, pr := range processesMentioning(append([]string{root}, p.ids...)...) {
		l = append(l, fmt.Sprintf("process %d: %.300s", pr.pid, pr.cmdline))
	}
	for _, q := range p.qemuOfPod() {
		l = append(l, fmt.Sprintf("qemu %d: %.300s", q.pid, q.cmdline))
	}
	for _, m := range mountsUnder(tmpDir, p.ids...) {
		if !slices.Contains(p.before.mounts, m) {
			l = append(l, "mount "+m)
		}
	}
	for _, c := range cgroupsBelow() {
		for _, id := range p.ids {
			if strings.Contains(c, id) {
				l = append(l, "cgroup "+c)
				break
			}
		}
	}
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		if !slices.Contains(p.before.rootEntries, e.Name()) {
			l = append(l, "runtime state "+filepath.Join(root, e.Name()))
		}
	}
	ents, _ = os.ReadDir(netnsDir())
	for _, e := range ents {
		if !slices.Contains(p.before.netns, e.Name()) {
			l = append(l, "network namespace "+filepath.Join(tmpDir, "state", "netns", e.Name()))
		}
	}
	for _, id := range p.ids {
		for _, d := range []string{
			"state/io.containerd.runtime.v2.task/k8s.io/" + id,
			"state/io.containerd.grpc.v1.cri/sandboxes/" + id,
			"state/io.containerd.grpc.v1.cri/containers/" + id,
			"root/io.containerd.grpc.v1.cri/sandboxes/" + id,
			"root/io.containerd.grpc.v1.cri/containers/" + id,
		} {
			if _, err := os.Lstat(filepath.Join(tmpDir, d)); err == nil {
				l = append(l, "containerd state "+filepath.Join(tmpDir, d))
			}
		}
	}
	return l
}

// forceCleanup removes a pod a failed test left, so that the next test
// starts clean; what it cannot remove, teardown reports.
func (p *pod) forceCleanup() {
	if p.id == "" {
		return
	}
	c, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	cri.rt.StopPodSandbox(c, stopPodRequest(p.id))
	cri.rt.RemovePodSandbox(c, removePodRequest(p.id))
	waitUntil(settle, func() bool { return len(p.leftovers()) == 0 })
	p.id = ""
}

// TestTektonPod runs a pod shaped like a Tekton TaskRun: two init
// containers in order, each writing to an emptyDir-like volume, then two
// steps and a sidecar running together.
func TestTektonPod(t *testing.T) {
	for _, h := range handlers {
		t.Run(h, func(t *testing.T) { tektonPod(t, h) })
	}
}

func tektonPod(t *testing.T, handler string) {
	p := newPod(t, handler, "tekton-"+handler)
	running := []string{"step1", "step2", "sidecar"}

	p.step("sandbox", nil, func(t *testing.T) {
		p.run(t)
		p.expectQemu(t)
	})
	p.step("init-containers", []string{"sandbox"}, func(t *testing.T) {
		p.runToCompletion(t, "init1", `echo one > /workspace/init1 && hostname > /workspace/init1.host && echo init1 done`, 0)
		// Its stdout reached containerd's log (CRI format: time stream tag line).
		if l := p.log("init1", 0); !strings.Contains(l, " stdout F init1 done\n") {
			t.Errorf("init1's CRI log has no \"init1 done\" on stdout:\n%s", l)
		}
		// The second proves the order: it fails unless the first finished.
		p.runToCompletion(t, "init2", `test -f /workspace/init1 && echo two > /workspace/init2 && hostname > /workspace/init2.host`, 0)
		for f, want := range map[string]string{"init1": "one\n", "init2": "two\n"} {
			data, err := os.ReadFile(filepath.Join(p.volume, f))
			if err != nil || string(data) != want {
				t.Errorf("volume file %s: %q (%v), want %q", f, data, err, want)
			}
		}
	})
	p.step("steps-and-sidecar", []string{"init-containers"}, func(t *testing.T) {
		p.create(t, "step1", 0, server)
		p.create(t, "step2", 0, sleeper)
		p.create(t, "sidecar", 0, sleeper)
		p.expectRunning(t, running...)
	})
	p.step("exec-sync", []string{"steps-and-sidecar"}, func(t *testing.T) {
		for _, n := range running {
			p.exec(t, n, `echo $NAME; cat /workspace/init1 /workspace/init2`, n+"\none\ntwo\n", 0)
			p.exec(t, n, `echo to-stderr >&2; exit 7`, "", 7)
		}
	})
	p.step("tcp-localhost", []string{"steps-and-sidecar"}, func(t *testing.T) {
		for _, n := range []string{"step2", "sidecar"} {
			var out, errOut string
			var code int32
			var err error
			// step1's server may still be starting.
			waitUntil(20*time.Second, func() bool {
				out, errOut, code, err = cri.execSync(p.containers[n], `nc 127.0.0.1 7777 </dev/null`)
				return err == nil && out == "pong\n"
			})
			if err != nil || out != "pong\n" {
				t.Errorf("%s → step1 over 127.0.0.1:7777: stdout %q, stderr %q, exit code %d, error %v; want \"pong\"", n, out, errOut, code, err)
			}
		}
	})
	p.step("namespaces", []string{"steps-and-sidecar"}, func(t *testing.T) {
		// Inside: the pod's net, IPC and UTS namespaces are shared; each
		// container has its own mount and PID namespaces.
		seen := map[string]map[string]string{} // ns → container → link
		for _, n := range running {
			out, _, _, err := cri.execSync(p.containers[n], `for n in net ipc uts mnt pid; do echo $n $(readlink /proc/self/ns/$n); done`)
			if err != nil {
				t.Fatalf("ExecSync in %s: %v", n, err)
			}
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				if f := strings.Fields(l); len(f) == 2 {
					if seen[f[0]] == nil {
						seen[f[0]] = map[string]string{}
					}
					seen[f[0]][n] = f[1]
				}
			}
		}
		for _, k := range []string{"net", "ipc", "uts", "mnt", "pid"} {
			distinct := map[string]bool{}
			for _, v := range seen[k] {
				distinct[v] = true
			}
			shared := k == "net" || k == "ipc" || k == "uts"
			if len(seen[k]) != len(running) || (shared && len(distinct) != 1) || (!shared && len(distinct) != len(running)) {
				t.Errorf("%s namespaces of %v: %v; want %s", k, running, seen[k], map[bool]string{true: "one, shared", false: "one each"}[shared])
			}
		}
		// On the host: the process containerd waits on for each container
		// is in the pod's network namespace (the one CNI set up).
		var netns []string
		ents, _ := os.ReadDir(netnsDir())
		for _, e := range ents {
			if !slices.Contains(p.before.netns, e.Name()) {
				netns = append(netns, filepath.Join(netnsDir(), e.Name()))
			}
		}
		if len(netns) != 1 {
			t.Fatalf("%d new network namespaces under %s, want the pod's one: %v", len(netns), netnsDir(), netns)
		}
		want := inode(netns[0])
		for _, n := range running {
			pid, err := cri.pid(p.containers[n], false)
			if err != nil {
				t.Errorf("%s: %v", n, err)
				continue
			}
			if got := inode(fmt.Sprintf("/proc/%d/ns/net", pid)); got != want {
				t.Errorf("%s's host process %d is in network namespace %d, want the pod's %d (%s)", n, pid, got, want, netns[0])
			}
		}
	})
	p.step("exit-code", []string{"init-containers"}, func(t *testing.T) {
		p.runToCompletion(t, "step3", `cat /workspace/init2 >/dev/null && exit 3`, 3)
		st, err := cri.status(p.containers["init1"])
		if err != nil || st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 0 {
			t.Errorf("init1's status later: %v (%v), want exited 0", st, err)
		}
	})
	p.step("stop-one", []string{"steps-and-sidecar"}, func(t *testing.T) {
		c, cancel := ctx()
		defer cancel()
		if _, err := cri.rt.StopContainer(c, &runtimeapi.StopContainerRequest{ContainerId: p.containers["sidecar"], Timeout: 10}); err != nil {
			t.Fatalf("StopContainer sidecar: %v", err)
		}
		st, err := cri.status(p.containers["sidecar"])
		if err != nil {
			t.Fatalf("ContainerStatus sidecar: %v", err)
		}
		// Its shell traps SIGTERM and exits 0.
		if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 0 {
			t.Errorf("sidecar after StopContainer: %s, exit code %d (reason %q), want exited 0", st.State, st.ExitCode, st.Reason)
		}
		p.expectRunning(t, "step1", "step2")
		p.exec(t, "step2", `echo alive; nc 127.0.0.1 7777 </dev/null`, "alive\npong\n", 0)
		p.exec(t, "step1", `echo alive`, "alive\n", 0)
	})
	p.step("recreate", []string{"stop-one"}, func(t *testing.T) {
		c, cancel := ctx()
		defer cancel()
		old := p.containers["sidecar"]
		if _, err := cri.rt.RemoveContainer(c, &runtimeapi.RemoveContainerRequest{ContainerId: old}); err != nil {
			t.Fatalf("RemoveContainer sidecar: %v", err)
		}
		if _, err := cri.status(old); err == nil {
			t.Errorf("ContainerStatus of the removed sidecar still answers")
		}
		p.expectRunning(t, "step1", "step2")
		id := p.create(t, "sidecar", 1, sleeper)
		if id == old {
			t.Errorf("re-created sidecar has the old ID %s", id)
		}
		p.expectRunning(t, "sidecar")
		p.exec(t, "sidecar", `cat /workspace/init1; nc 127.0.0.1 7777 </dev/null`, "one\npong\n", 0)
	})
	p.step("hostname", []string{"init-containers"}, func(t *testing.T) {
		for _, f := range []string{"init1.host", "init2.host"} {
			data, err := os.ReadFile(filepath.Join(p.volume, f))
			if err != nil || string(data) != podHostname+"\n" {
				t.Errorf("hostname seen by %s: %q (%v), want %q", strings.TrimSuffix(f, ".host"), data, err, podHostname)
			}
		}
		// After "recreate": the re-created sidecar is checked too, when
		// there is one.
		if !p.ok["steps-and-sidecar"] {
			t.Errorf("not checked in the running containers: step \"steps-and-sidecar\" did not pass")
			return
		}
		for _, n := range running {
			if n == "sidecar" && !p.ok["recreate"] {
				continue
			}
			p.exec(t, n, `hostname`, podHostname+"\n", 0)
		}
	})
	p.step("one-qemu", []string{"sandbox"}, func(t *testing.T) {
		p.expectQemu(t)
	})
	p.step("teardown", []string{"sandbox"}, func(t *testing.T) {
		p.expectLeakCheckSees(t)
		p.stopAndRemove(t)
	})
}

// TestPodCrash kills the pod under its running containers: with skiff its
// VM's qemu; with runc (the honest reference) every process of the pod.
// Every container must then report exited (137: killed), and the pod must
// stop and go without leaving anything.
func TestPodCrash(t *testing.T) {
	for _, h := range handlers {
		t.Run(h, func(t *testing.T) { podCrash(t, h) })
	}
}

func podCrash(t *testing.T, handler string) {
	p := newPod(t, handler, "crash-"+handler)
	names := []string{"app1", "app2"}
	p.step("sandbox", nil, func(t *testing.T) {
		p.run(t)
		for _, n := range names {
			p.create(t, n, 0, sleeper)
		}
		p.expectRunning(t, names...)
		p.expectQemu(t)
		p.expectLeakCheckSees(t)
	})
	p.step("crash", []string{"sandbox"}, func(t *testing.T) {
		if handler == "skiff" {
			qs := p.qemuOfPod()
			if len(qs) != 1 {
				t.Fatalf("%d qemu processes for the pod, want 1", len(qs))
			}
			t.Logf("killing qemu %d", qs[0].pid)
			syscall.Kill(qs[0].pid, syscall.SIGKILL)
			return
		}
		pid, err := cri.pid(p.id, true)
		if err != nil {
			t.Fatal(err)
		}
		pids := []int{pid}
		for _, n := range names {
			pid, err := cri.pid(p.containers[n], false)
			if err != nil {
				t.Fatal(err)
			}
			pids = append(pids, pid)
		}
		t.Logf("killing the pod's processes %v", pids)
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	p.step("containers-exited", []string{"crash"}, func(t *testing.T) {
		for _, n := range names {
			st, err := cri.waitExited(p.containers[n], exitWait)
			if err != nil {
				t.Errorf("%s: %v", n, err)
				continue
			}
			if st.ExitCode != 137 {
				t.Errorf("%s exited %d (reason %q), want 137 (killed)", n, st.ExitCode, st.Reason)
			}
		}
		ok := waitUntil(30*time.Second, func() bool {
			c, cancel := ctx()
			defer cancel()
			st, err := cri.rt.PodSandboxStatus(c, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.id})
			return err == nil && st.Status.State == runtimeapi.PodSandboxState_SANDBOX_NOTREADY
		})
		if !ok {
			t.Errorf("pod sandbox still SANDBOX_READY 30 s after the crash")
		}
	})
	p.step("teardown", []string{"sandbox"}, func(t *testing.T) {
		p.stopAndRemove(t)
	})
}
