package agent_test

// End-to-end tests of the agent in a real VM. They run only with
// SKIFF_AGENT_VM_TEST=1 and need:
//
//	SKIFF_AGENT_VM_KERNEL  an uncompressed guest vmlinux
//	SKIFF_AGENT_VM_INITRD  a newc cpio with the static agent as /init and its
//	                       virtio/9p modules in /lib/modules (+ modules.order)
//	SKIFF_AGENT_VM_BUSYBOX a static busybox (default /bin/busybox)
//
// Optional: SKIFF_AGENT_VM_APPEND adds to the kernel command line (e.g.
// "skiff.debug=1"), SKIFF_AGENT_VM_CONSOLE=1 logs the console of every VM.
//
// and qemu-system-x86_64 in PATH. The guest runs under TCG.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

type vm struct {
	t       *testing.T
	dir     string
	rootfs  string
	vol     string
	qemu    *exec.Cmd
	sess    *yamux.Session
	started time.Time
	pinged  time.Duration
}

func needVM(t *testing.T) {
	if os.Getenv("SKIFF_AGENT_VM_TEST") != "1" {
		t.Skip("set SKIFF_AGENT_VM_TEST=1 (see vm_test.go) to boot a guest")
	}
}

// bootVM boots a guest; extra are more QEMU arguments (devices).
func bootVM(t *testing.T, extra ...string) *vm {
	dir := t.TempDir()
	v := &vm{t: t, dir: dir, rootfs: filepath.Join(dir, "rootfs"), vol: filepath.Join(dir, "vol")}
	busybox := os.Getenv("SKIFF_AGENT_VM_BUSYBOX")
	if busybox == "" {
		busybox = "/bin/busybox"
	}
	must(t, os.MkdirAll(v.rootfs+"/bin", 0o755))
	must(t, os.MkdirAll(v.rootfs+"/etc", 0o755))
	must(t, os.MkdirAll(v.rootfs+"/home/user", 0o755))
	must(t, os.Chown(v.rootfs+"/home/user", 1000, 1000))
	must(t, os.MkdirAll(v.vol, 0o755))
	must(t, os.WriteFile(v.vol+"/file", []byte("hello-vol\n"), 0o644))
	b, err := os.ReadFile(busybox)
	must(t, err)
	must(t, os.WriteFile(v.rootfs+"/bin/busybox", b, 0o755))
	for _, c := range []string{"sh", "echo", "cat", "id", "true", "hostname", "pwd", "env", "touch", "sleep", "ls", "readlink", "test", "nc", "seq"} {
		must(t, os.Symlink("busybox", v.rootfs+"/bin/"+c))
	}
	must(t, os.WriteFile(v.rootfs+"/etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"), 0o644))

	sock := filepath.Join(dir, "agent.sock")
	v.qemu = exec.Command("qemu-system-x86_64",
		"-machine", "q35,accel=tcg", "-cpu", "max", "-m", "512", "-smp", "1",
		"-nographic", "-nodefaults", "-no-user-config", "-no-reboot",
		"-serial", "file:"+filepath.Join(dir, "console.log"),
		"-kernel", os.Getenv("SKIFF_AGENT_VM_KERNEL"), "-initrd", os.Getenv("SKIFF_AGENT_VM_INITRD"),
		"-append", "console=ttyS0 quiet panic=-1 reboot=t nokaslr no_timer_check tsc=reliable lpj=5000000 8250.nr_uarts=1 "+os.Getenv("SKIFF_AGENT_VM_APPEND"),
		"-chardev", "socket,id=agent,path="+sock+",server=on,wait=off",
		"-device", "virtio-serial-pci", "-device", "virtserialport,chardev=agent,name="+protocol.PortName,
		"-fsdev", "local,id=fs0,path="+v.rootfs+",security_model=none",
		"-device", "virtio-9p-pci,fsdev=fs0,mount_tag=rootfs",
		"-fsdev", "local,id=fs1,path="+v.vol+",security_model=none",
		"-device", "virtio-9p-pci,fsdev=fs1,mount_tag=vol",
	)
	v.qemu.Args = append(v.qemu.Args, extra...)
	v.started = time.Now()
	must(t, v.qemu.Start())
	t.Cleanup(func() {
		v.qemu.Process.Kill()
		v.qemu.Wait()
		if t.Failed() || os.Getenv("SKIFF_AGENT_VM_CONSOLE") == "1" {
			b, _ := os.ReadFile(filepath.Join(dir, "console.log"))
			t.Logf("console:\n%s", b)
		}
	})
	var conn net.Conn
	for {
		conn, err = net.Dial("unix", sock)
		if err == nil {
			break
		}
		if time.Since(v.started) > 10*time.Second {
			t.Fatalf("dial agent socket: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	v.sess, err = yamux.Client(conn, protocol.YamuxConfig())
	must(t, err)
	var pong protocol.PingResponse
	must(t, v.call(protocol.MethodPing, protocol.PingRequest{}, &pong))
	v.pinged = time.Since(v.started)
	if pong.Version != protocol.Version || pong.Kernel == "" {
		t.Fatalf("ping: %+v", pong)
	}
	return v
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// call does one request/response; it returns the stream when keep is set.
func (v *vm) stream(method string, req, resp any) (net.Conn, error) {
	st, err := v.sess.Open()
	if err != nil {
		return nil, err
	}
	r, err := protocol.NewRequest(method, req)
	if err != nil {
		return nil, err
	}
	if err := protocol.WriteFrame(st, r); err != nil {
		return nil, err
	}
	var out protocol.Response
	if err := protocol.ReadFrame(st, &out); err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	if out.Error != "" {
		st.Close()
		return nil, fmt.Errorf("%s", out.Error)
	}
	if resp != nil {
		if err := json.Unmarshal(out.Body, resp); err != nil {
			return nil, err
		}
	}
	return st, nil
}

func (v *vm) call(method string, req, resp any) error {
	st, err := v.stream(method, req, resp)
	if st != nil {
		st.Close()
	}
	return err
}

func baseSpec(args ...string) *specs.Spec {
	return &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "/run/skiff/shares/rootfs"},
		Process: &specs.Process{
			Args: args,
			Env:  []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"},
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"},
				Effective: []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"},
				Permitted: []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"},
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Hostname: "skiff",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		},
		Linux: &specs.Linux{
			MaskedPaths:   []string{"/proc/acpi", "/proc/kcore", "/proc/keys", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

var rootShare = protocol.Share{Tag: "rootfs", GuestPath: "/run/skiff/shares/rootfs", FSType: "9p"}

type result struct {
	status         int
	stdout, stderr string
}

// run creates, attaches, starts and waits for one container.
func (v *vm) run(id string, spec *specs.Spec, shares []protocol.Share, stdin string, between func()) (result, error) {
	var res result
	if shares == nil {
		shares = []protocol.Share{rootShare}
	}
	var cr protocol.CreateContainerResponse
	if err := v.call(protocol.MethodCreateContainer, protocol.CreateContainerRequest{ID: id, Spec: spec, Shares: shares}, &cr); err != nil {
		return res, err
	}
	var wg sync.WaitGroup
	outs := make([]string, 3)
	for i, name := range []string{protocol.Stdin, protocol.Stdout, protocol.Stderr} {
		st, err := v.stream(protocol.MethodOpenStdio, protocol.OpenStdioRequest{ID: id, Stream: name}, nil)
		if err != nil {
			return res, err
		}
		if i == 0 {
			io.WriteString(st, stdin)
			st.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, _ := io.ReadAll(st)
			outs[i] = string(b)
		}()
	}
	if err := v.call(protocol.MethodStartContainer, protocol.StartContainerRequest{ID: id}, nil); err != nil {
		return res, err
	}
	if between != nil {
		between()
	}
	var wr protocol.WaitProcessResponse
	if err := v.call(protocol.MethodWaitProcess, protocol.WaitProcessRequest{ID: id}, &wr); err != nil {
		return res, err
	}
	wg.Wait()
	return result{wr.ExitStatus, outs[1], outs[2]}, nil
}

func TestVMContainers(t *testing.T) {
	needVM(t)
	v := bootVM(t)
	t.Logf("ping answered %v after qemu start", v.pinged)

	check := func(name string, spec *specs.Spec, shares []protocol.Share, stdin string, want result) {
		t.Helper()
		got, err := v.run(name, spec, shares, stdin, nil)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			return
		}
		if got != want {
			t.Errorf("%s: got %+v, want %+v", name, got, want)
		}
	}
	check("basic", baseSpec("sh", "-c", "echo out; echo err >&2; exit 7"), nil, "", result{7, "out\n", "err\n"})
	check("stdin", baseSpec("cat"), nil, "piped\n", result{0, "piped\n", ""})
	s := baseSpec("cat", "/proc/sys/kernel/domainname")
	s.Linux.Sysctl = map[string]string{"kernel.domainname": "example"}
	check("sysctl", s, nil, "", result{0, "example\n", ""})

	s = baseSpec("sh", "-c", `id -u; id -g; id -G; hostname; pwd; echo "$FOO $HOME"; touch /x 2>/dev/null || echo ro-root`)
	s.Process.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10}}
	s.Process.Cwd = "/home/user"
	s.Process.Env = append(s.Process.Env, "FOO=bar")
	s.Root.Readonly = true
	check("user", s, nil, "", result{0, "1000\n1000\n1000 10\nskiff\n/home/user\nbar /home/user\nro-root\n", ""})

	s = baseSpec("sh", "-c", `cat /vol/file; echo x > /vol/new 2>/dev/null || echo ro-vol; ls /dev | tr '\n' ' '`)
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/vol", Type: "bind", Source: "/run/skiff/shares/vol", Options: []string{"rbind", "ro"}})
	shares := []protocol.Share{rootShare, {Tag: "vol", GuestPath: "/run/skiff/shares/vol", FSType: "9p"}}
	got, err := v.run("vol", s, shares, "", nil)
	if err != nil || got.status != 0 || !strings.HasPrefix(got.stdout, "hello-vol\nro-vol\n") {
		t.Errorf("vol: %+v %v", got, err)
	}
	t.Logf("vol: /dev has %q", got.stdout)

	// A write in the guest shows on the host at once.
	check("write", baseSpec("sh", "-c", "echo fresh > /written"), nil, "", result{0, "", ""})
	if b, _ := os.ReadFile(v.rootfs + "/written"); string(b) != "fresh\n" {
		t.Errorf("host sees %q in /written", b)
	}

	// A terminal is the process's stdin and stdout (the agent has run
	// them since terminals came; this case once expected a refusal).
	s = baseSpec("sh", "-c", "test -t 0 && test -t 1 && echo tty")
	s.Process.Terminal = true
	check("tty", s, nil, "", result{0, "tty\r\n", ""})

	got, err = v.run("kill", baseSpec("sleep", "100"), nil, "", func() {
		must(t, v.call(protocol.MethodSignalProcess, protocol.SignalProcessRequest{ID: "kill", Signal: 9, All: true}, nil))
	})
	if err != nil || got.status != 137 {
		t.Errorf("kill: %+v %v", got, err)
	}

	for _, tc := range []struct {
		name string
		do   func() error
		want string
	}{
		{"missing exe", func() error {
			_, err := v.run("noexe", baseSpec("nosuch"), nil, "", nil)
			return err
		}, `executable file not found`},
		{"bad cwd", func() error {
			s := baseSpec("true")
			s.Process.Cwd = "/nowhere"
			_, err := v.run("badcwd", s, nil, "", nil)
			return err
		}, "chdir to cwd"},
		{"duplicate", func() error { _, err := v.run("basic", baseSpec("true"), nil, "", nil); return err }, "already exists"},
		{"unknown", func() error {
			return v.call(protocol.MethodStartContainer, protocol.StartContainerRequest{ID: "nope"}, nil)
		}, "container nope not found"},
		{"bad id", func() error { _, err := v.run("../x", baseSpec("true"), nil, "", nil); return err }, "invalid container ID"},
		{"nil spec", func() error {
			return v.call(protocol.MethodCreateContainer, protocol.CreateContainerRequest{ID: "nilspec"}, nil)
		}, "spec is missing"},
		{"bad method", func() error { return v.call("Nope", nil, nil) }, "unknown method"},
	} {
		err := tc.do()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	// Still serving after all that.
	check("after", baseSpec("true"), nil, "", result{0, "", ""})
	must(t, v.call(protocol.MethodShutdown, protocol.ShutdownRequest{}, nil))
	done := make(chan error, 1)
	go func() { done <- v.qemu.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Errorf("guest did not power off after Shutdown")
	}
}

func TestVMTiming(t *testing.T) {
	needVM(t)
	var pings, trues []time.Duration
	for i := 0; i < 3; i++ {
		v := bootVM(t)
		got, err := v.run("t", baseSpec("/bin/true"), nil, "", nil)
		if err != nil || got.status != 0 {
			t.Fatalf("true: %+v %v", got, err)
		}
		pings = append(pings, v.pinged)
		trues = append(trues, time.Since(v.started))
		v.qemu.Process.Kill()
		v.qemu.Wait()
	}
	median := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	t.Logf("qemu start to Ping: %v (median of %v)", median(pings), pings)
	t.Logf("qemu start to /bin/true exit status: %v (median of %v)", median(trues), trues)
}

func TestVMExecFailureAndReconnect(t *testing.T) {
	needVM(t)
	v := bootVM(t)
	// Executable by its mode, not by its content: execve fails after Start.
	must(t, os.WriteFile(v.rootfs+"/bin/junk", []byte("\x01\x02junk"), 0o755))
	got, err := v.run("junk", baseSpec("junk"), nil, "", nil)
	if err != nil || got.status != 127 || !strings.HasPrefix(got.stderr, "skiff: exec junk: ") {
		t.Errorf("junk: %+v %v", got, err)
	}
	// The host goes away and comes back: a new session, same containers.
	v.sess.Close()
	conn, err := net.Dial("unix", filepath.Join(v.dir, "agent.sock"))
	must(t, err)
	v.sess, err = yamux.Client(conn, protocol.YamuxConfig())
	must(t, err)
	var wr protocol.WaitProcessResponse
	must(t, v.call(protocol.MethodWaitProcess, protocol.WaitProcessRequest{ID: "junk"}, &wr))
	if wr.ExitStatus != 127 {
		t.Errorf("after reconnect: status %d", wr.ExitStatus)
	}
}
