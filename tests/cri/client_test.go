package cri

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// client is a CRI client (runtime and image services) on containerd's socket.
type client struct {
	conn *grpc.ClientConn
	rt   runtimeapi.RuntimeServiceClient
	img  runtimeapi.ImageServiceClient
}

func dial(sock string) (*client, error) {
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	return &client{conn: conn, rt: runtimeapi.NewRuntimeServiceClient(conn), img: runtimeapi.NewImageServiceClient(conn)}, nil
}

func versionRequest() *runtimeapi.VersionRequest { return &runtimeapi.VersionRequest{} }

func stopPodRequest(id string) *runtimeapi.StopPodSandboxRequest {
	return &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}
}

func removePodRequest(id string) *runtimeapi.RemovePodSandboxRequest {
	return &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}
}

func (c *client) listPods(ctx context.Context) ([]string, error) {
	r, err := c.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, p := range r.Items {
		ids = append(ids, p.Id)
	}
	return ids, nil
}

func (c *client) waitImage(ref string, d time.Duration) error {
	var last error
	ok := waitUntil(d, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := c.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		last = err
		return err == nil && r.Image != nil
	})
	if !ok {
		return fmt.Errorf("image %s not listed by the CRI plugin after import (last error: %v)", ref, last)
	}
	return nil
}

// callTimeout bounds one CRI call: a skiff pod sandbox boots a VM, which
// takes seconds under TCG on a busy machine.
const callTimeout = 2 * time.Minute

func ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), callTimeout)
}

// podSpec is the pod-level configuration the tests use.
func podConfig(name, uid, hostname, logDir string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Uid: uid, Namespace: "skiff-cri"},
		Hostname:     hostname,
		LogDirectory: logDir,
		Labels:       map[string]string{"suite": "skiff-cri"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent:    cgroupParent,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: podNamespaces()},
		},
	}
}

// podNamespaces are the kubelet's for a pod without shareProcessNamespace:
// network and IPC of the pod (UTS follows the network), a PID namespace
// per container. The CRI's zero value would share the PID namespace.
func podNamespaces() *runtimeapi.NamespaceOption {
	return &runtimeapi.NamespaceOption{
		Network: runtimeapi.NamespaceMode_POD,
		Ipc:     runtimeapi.NamespaceMode_POD,
		Pid:     runtimeapi.NamespaceMode_CONTAINER,
	}
}

// containerConfig is one busybox container running script with sh, the
// volume (if any) at /workspace, NAME in its environment.
func containerConfig(name string, attempt uint32, script, volume string) *runtimeapi.ContainerConfig {
	c := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name, Attempt: attempt},
		Image:    &runtimeapi.ImageSpec{Image: busyboxRef},
		Command:  []string{"/bin/sh", "-c", script},
		Envs:     []*runtimeapi.KeyValue{{Key: "NAME", Value: []byte(name)}},
		LogPath:  fmt.Sprintf("%s.%d.log", name, attempt),
		Linux: &runtimeapi.LinuxContainerConfig{
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: podNamespaces()},
		},
	}
	if volume != "" {
		c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/workspace", HostPath: volume}}
	}
	return c
}

// status returns a container's state and exit code.
func (c *client) status(id string) (*runtimeapi.ContainerStatus, error) {
	ctx, cancel := ctx()
	defer cancel()
	r, err := c.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		return nil, err
	}
	return r.Status, nil
}

// pid returns the host PID containerd knows for a container (its verbose
// info): runc's container process, skiff's host process standing for it.
func (c *client) pid(id string, sandbox bool) (int, error) {
	ctx, cancel := ctx()
	defer cancel()
	var info map[string]string
	if sandbox {
		r, err := c.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
		if err != nil {
			return 0, err
		}
		info = r.Info
	} else {
		r, err := c.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
		if err != nil {
			return 0, err
		}
		info = r.Info
	}
	var v struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(info["info"]), &v); err != nil {
		return 0, fmt.Errorf("verbose info of %s: %v", id, err)
	}
	if v.Pid <= 0 {
		return 0, fmt.Errorf("verbose info of %s has no pid", id)
	}
	return v.Pid, nil
}

// waitExited polls until a container has exited and returns its status.
func (c *client) waitExited(id string, d time.Duration) (*runtimeapi.ContainerStatus, error) {
	var st *runtimeapi.ContainerStatus
	var err error
	ok := waitUntil(d, func() bool {
		st, err = c.status(id)
		return err == nil && st.State == runtimeapi.ContainerState_CONTAINER_EXITED
	})
	if err != nil {
		return nil, err
	}
	if !ok {
		return st, fmt.Errorf("container %s still %s after %s", st.Metadata.GetName(), st.State, d)
	}
	return st, nil
}

// execSync runs a shell command in a container.
func (c *client) execSync(id, script string) (stdout, stderr string, code int32, err error) {
	ctx, cancel := ctx()
	defer cancel()
	r, err := c.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"/bin/sh", "-c", script}, Timeout: 60})
	if err != nil {
		return "", "", -1, err
	}
	return string(r.Stdout), string(r.Stderr), r.ExitCode, nil
}

type proc struct {
	pid     int
	cmdline string
}

// processesMentioning lists live processes (not zombies, not this one)
// one of whose arguments contains s.
func processesMentioning(s ...string) []proc {
	var ps []proc
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || !alive(pid) {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, x := range s {
			if bytes.Contains(cmd, []byte(x)) {
				ps = append(ps, proc{pid, strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))})
				break
			}
		}
	}
	return ps
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// qemuProcesses are the live qemu processes whose command line mentions s.
func qemuProcesses(s string) []proc {
	var qs []proc
	for _, p := range processesMentioning(s) {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.pid))
		// By name, not by path: QEMU's file servers live in
		// /usr/lib/qemu/ too.
		if strings.HasPrefix(filepath.Base(exe), "qemu") || strings.HasPrefix(filepath.Base(strings.Fields(p.cmdline)[0]), "qemu") {
			qs = append(qs, p)
		}
	}
	return qs
}

// mountsUnder lists mount points (from /proc/self/mountinfo) below dir, or
// naming one of ids, in mount order.
func mountsUnder(dir string, ids ...string) []string {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var ms []string
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		mp := f[4] // octal escapes only for spaces and such: none in the suite's paths
		match := strings.HasPrefix(mp, dir+"/")
		for _, id := range ids {
			match = match || strings.Contains(mp, id)
		}
		if match {
			ms = append(ms, mp)
		}
	}
	return ms
}

// cgroupDirs are the suite's cgroup parent in every cgroup hierarchy of
// the host (v1 controllers and the unified one, or v2 alone).
func cgroupDirs() []string {
	var ds []string
	cands := []string{filepath.Join("/sys/fs/cgroup", cgroupParent)}
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range ents {
		if e.IsDir() {
			cands = append(cands, filepath.Join("/sys/fs/cgroup", e.Name(), cgroupParent))
		}
	}
	for _, d := range cands {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			ds = append(ds, d)
		}
	}
	return ds
}

// cgroupsBelow lists the cgroups below the suite's parent, deepest first.
func cgroupsBelow() []string {
	var cs []string
	for _, d := range cgroupDirs() {
		filepath.WalkDir(d, func(path string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() && path != d {
				cs = append(cs, path)
			}
			return nil
		})
	}
	slices.SortFunc(cs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return cs
}
