package container

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		ws   unix.WaitStatus
		want int
	}{
		{0, 0},
		{7 << 8, 7},
		{255 << 8, 255},
		{unix.WaitStatus(unix.SIGKILL), 137},
		{unix.WaitStatus(unix.SIGTERM) | 0x80, 143}, // core dumped
	} {
		if got := ExitStatus(tc.ws); got != tc.want {
			t.Errorf("ExitStatus(%#x) = %d, want %d", uint32(tc.ws), got, tc.want)
		}
	}
}

func TestParseMountOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  string
		opts []string
		want mountOpts
	}{
		{"proc", "proc", []string{"nosuid", "noexec", "nodev"},
			mountOpts{flags: unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV}},
		{"tmpfs data", "tmpfs", []string{"nosuid", "strictatime", "mode=755", "size=65536k"},
			mountOpts{flags: unix.MS_NOSUID | unix.MS_STRICTATIME, data: "mode=755,size=65536k"}},
		{"devpts", "devpts", []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"},
			mountOpts{flags: unix.MS_NOSUID | unix.MS_NOEXEC, data: "newinstance,ptmxmode=0666,mode=0620,gid=5"}},
		{"ro rbind", "none", []string{"rbind", "ro", "nosuid", "rprivate"},
			mountOpts{flags: unix.MS_BIND | unix.MS_REC, bind: true, recursive: true,
				remount: unix.MS_RDONLY | unix.MS_NOSUID, propagation: unix.MS_PRIVATE | unix.MS_REC}},
		{"bind type", "bind", []string{"rw"},
			mountOpts{flags: unix.MS_BIND, bind: true}},
		{"rw clears ro", "tmpfs", []string{"ro", "rw"}, mountOpts{}},
	} {
		got := parseMountOptions(tc.typ, tc.opts)
		if got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestSecurePath(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "a/b"), 0o755)
	os.Symlink("/a", filepath.Join(root, "abs"))
	os.Symlink("../../../..", filepath.Join(root, "a/up"))
	os.Symlink("/etc/passwd", filepath.Join(root, "a/passwd"))
	os.Symlink("loop2", filepath.Join(root, "loop1"))
	os.Symlink("loop1", filepath.Join(root, "loop2"))
	for in, want := range map[string]string{
		"/":               root,
		"/a/b":            root + "/a/b",
		"/abs/b/new":      root + "/a/b/new",
		"/a/up/etc":       root + "/etc",
		"/../../x":        root + "/x",
		"/a/passwd":       root + "/etc/passwd",
		"a/./b/../b/c":    root + "/a/b/c",
		"/missing/../abs": root + "/a",
	} {
		got, err := securePath(root, in)
		if err != nil || got != want {
			t.Errorf("securePath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := securePath(root, "/loop1/x"); err == nil {
		t.Errorf("symlink loop not refused")
	}
}

func TestValidate(t *testing.T) {
	ok := &specs.Spec{Process: &specs.Process{Args: []string{"sh"}, Cwd: "/"}, Root: &specs.Root{Path: "/r"}}
	if err := Validate(ok); err != nil {
		t.Fatal(err)
	}
	tty := *ok
	tty.Process = &specs.Process{Args: []string{"sh"}, Terminal: true}
	if err := Validate(&tty); err != nil {
		t.Errorf("Validate refused a terminal process: %v", err)
	}
	relCwd := *ok
	relCwd.Process = &specs.Process{Args: []string{"sh"}, Cwd: "tmp"}
	for _, s := range []*specs.Spec{nil, {}, {Process: &specs.Process{}}, &relCwd} {
		if Validate(s) == nil {
			t.Errorf("Validate(%+v) accepted", s)
		}
	}
}

func TestCapSet(t *testing.T) {
	if got := capSet([]string{"CAP_CHOWN", "CAP_KILL", "CAP_NOPE", "CAP_CHECKPOINT_RESTORE"}); got != 1|1<<5|1<<40 {
		t.Fatalf("capSet = %#x", got)
	}
}

func TestReadProcess(t *testing.T) {
	p, ok := readProcess(os.Getpid())
	if !ok || p.PID != os.Getpid() || p.PPID != os.Getppid() || p.UID != os.Getuid() || len(p.Args) == 0 {
		t.Fatalf("readProcess(self) = %+v, %v", p, ok)
	}
	if _, ok := readProcess(1 << 30); ok {
		t.Error("readProcess of a PID that does not exist succeeded")
	}
}

// Only the agent decides whether a container gets its own network
// namespace: the annotation that tells the init is set when it says so,
// and a host's copy of it is dropped; the caller's spec is never changed.
func TestForInitOwnNetwork(t *testing.T) {
	spec := &specs.Spec{Annotations: map[string]string{"a": "b"}}
	if got := forInit(spec, false, false); got != spec {
		t.Error("a spec without the annotation is copied for nothing")
	}
	got := forInit(spec, true, false)
	if got.Annotations[ownNetAnnotation] != "true" || got.Annotations["a"] != "b" {
		t.Errorf("own network: annotations %v", got.Annotations)
	}
	if _, ok := spec.Annotations[ownNetAnnotation]; ok {
		t.Error("forInit changed the caller's spec")
	}
	forged := &specs.Spec{Annotations: map[string]string{ownNetAnnotation: "true"}}
	if _, ok := forInit(forged, false, false).Annotations[ownNetAnnotation]; ok {
		t.Error("the host's own copy of the annotation reached the init")
	}
	if got := forInit(&specs.Spec{}, true, false); got.Annotations[ownNetAnnotation] != "true" {
		t.Errorf("own network without annotations: %v", got.Annotations)
	}
}

// A pod's container in its sandbox's UTS namespace takes the pod's name:
// the init gets no hostname or domain name of its own to set.
func TestForInitSharedUTS(t *testing.T) {
	spec := &specs.Spec{Hostname: "app", Domainname: "example", Annotations: map[string]string{"a": "b"}}
	got := forInit(spec, false, true)
	if got.Hostname != "" || got.Domainname != "" || got.Annotations["a"] != "b" {
		t.Errorf("shared UTS: got hostname %q, domainname %q, annotations %v", got.Hostname, got.Domainname, got.Annotations)
	}
	if spec.Hostname != "app" || spec.Domainname != "example" {
		t.Error("forInit changed the caller's spec")
	}
	if got := forInit(spec, false, false); got != spec {
		t.Error("a spec with its own UTS namespace is copied for nothing")
	}
	if got := forInit(&specs.Spec{}, true, true); got.Hostname != "" || got.Annotations[ownNetAnnotation] != "true" {
		t.Errorf("own network and shared UTS: %+v", got)
	}
}

// Only network, IPC and UTS namespaces named by path are taken from the
// sandbox; a path on the PID or mount namespace, or a namespace without
// one, leaves the container its own.
func TestToJoin(t *testing.T) {
	spec := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
		{Type: specs.PIDNamespace, Path: "/proc/7/ns/pid"},
		{Type: specs.MountNamespace, Path: "/proc/7/ns/mnt"},
		{Type: specs.UTSNamespace, Path: "/proc/7/ns/uts"},
		{Type: specs.IPCNamespace},
		{Type: specs.NetworkNamespace, Path: "/proc/7/ns/net"},
	}}}
	var got []string
	for _, k := range toJoin(spec) {
		got = append(got, k.proc)
	}
	if strings.Join(got, ",") != "net,uts" {
		t.Errorf("toJoin = %v, want [net uts]", got)
	}
	if toJoin(&specs.Spec{}) != nil {
		t.Error("a spec without linux joins something")
	}
}

// The launcher's one choice: a container that joins another's namespaces
// is forked, never the zygote (whose namespaces are fresh), and is not
// given new namespaces of the kinds it joins.
func TestLauncherJoining(t *testing.T) {
	spec := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}}}}
	z := &Zygote{}
	l := newLauncher("c", spec, nil, z, nil)
	if l.z != z {
		t.Error("a container joining nothing does not use the zygote")
	}
	if want := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWPID); l.attr.Sys.Cloneflags != want {
		t.Errorf("own namespaces: clone flags %#x, want %#x", l.attr.Sys.Cloneflags, want)
	}
	l = newLauncher("c", spec, nil, z, []nsFile{{nsKind: nsNet}, {nsKind: nsUTS}})
	if l.z != nil {
		t.Error("a container joining a sandbox's namespaces uses the zygote")
	}
	if want := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWIPC | unix.CLONE_NEWPID); l.attr.Sys.Cloneflags != want {
		t.Errorf("joining net and UTS: clone flags %#x, want %#x", l.attr.Sys.Cloneflags, want)
	}
}

// Remove kills a created container's process, never started, and gives
// back its start pipe.
func TestRemoveKillsAndWaits(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	status := make(chan unix.WaitStatus, 1)
	go func() {
		cmd.Wait()
		status <- unix.WaitStatus(cmd.ProcessState.Sys().(syscall.WaitStatus))
	}()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c := &Container{Child: Watch(cmd.Process.Pid, status), id: "x", startW: w}
	if err := c.Remove(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := c.ExitStatus(); got != 137 {
		t.Errorf("exit status %d, want 137", got)
	}
	if n, _ := r.Read(make([]byte, 1)); n != 0 {
		t.Error("the start pipe was written to, not closed")
	}
	if err := c.Start(); err == nil {
		t.Error("a removed container started")
	}
}

// A program is ready for a signal once it has a handler for it and
// sleeps: a shell in its wait after a trap, not a sleeper with none.
func TestReadyFor(t *testing.T) {
	trap := exec.Command("/bin/sh", "-c", `trap "exit 0" TERM; sleep 5 & wait`)
	plain := exec.Command("sleep", "5")
	for _, c := range []*exec.Cmd{trap, plain} {
		if err := c.Start(); err != nil {
			t.Skip(err)
		}
		defer c.Wait()
		defer c.Process.Kill()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ready, ok := readyFor(trap.Process.Pid, unix.SIGTERM)
		if !ok {
			t.Fatalf("cannot read the status of %d", trap.Process.Pid)
		}
		if ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a shell waiting with a TERM trap is not ready for TERM")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if ready, ok := readyFor(plain.Process.Pid, unix.SIGTERM); ready || !ok {
		t.Errorf("sleep, with no handler: ready %v, ok %v; want not ready", ready, ok)
	}
	if ready, ok := readyFor(trap.Process.Pid, unix.SIGUSR1); ready || !ok {
		t.Errorf("the shell, with no USR1 trap: ready %v, ok %v; want not ready for USR1", ready, ok)
	}
	if _, ok := readyFor(1<<22, unix.SIGTERM); ok {
		t.Errorf("a process that does not exist: ok")
	}
}
