package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// podman drives the runtime the way most users reach it: `podman
// --runtime`. Every container here is a VM when the runtime is skiff.

func TestPodmanRunStdioAndExitCode(t *testing.T) {
	t.Parallel()
	root := e2e.PodmanRootfs(t)
	name := e2e.PodmanName(t, "run")
	r := e2e.Podman(t, nil, "run", "--name", name, "--rootfs", root, "/bin/sh", "-c", "echo out; echo err >&2; exit 7")
	if r.Code != 7 {
		t.Errorf("exit code %d, want 7: %v", r.Code, r)
	}
	if !strings.Contains(r.Stdout, "out") || !strings.Contains(r.Stderr, "err") || strings.Contains(r.Stdout, "err") {
		t.Errorf("stdio mixed up: %v", r)
	}
	r = e2e.Podman(t, strings.NewReader("piped in\n"), "run", "--rm", "-i", "--rootfs", root, "/bin/cat")
	if r.Code != 0 || r.Stdout != "piped in\n" {
		t.Errorf("run -i with stdin: %v", r)
	}
}

func TestPodmanRunOptions(t *testing.T) {
	t.Parallel()
	root := e2e.PodmanRootfs(t)
	dir := t.TempDir()
	rw, ro := filepath.Join(dir, "rw"), filepath.Join(dir, "ro")
	os.MkdirAll(rw, 0o777)
	os.MkdirAll(ro, 0o755)
	os.Chmod(rw, 0o777)
	os.WriteFile(filepath.Join(ro, "f"), []byte("readonly content"), 0o644)
	script := `echo foo=$FOO; echo cwd=$(pwd); echo uid=$(id -u); echo host=$(hostname)
echo x > /scratch/x && echo tmpfs=ok
echo written-by-container > /data/out && echo rw=ok
if echo y > /ro/f 2>/dev/null; then echo ro=writable; else echo ro=refused; fi
echo rocontent=$(cat /ro/f)`
	// --rootfs is a switch: the first argument after the options is the
	// rootfs, not an image.
	r := e2e.PodmanOK(t, "run", "--rm", "-e", "FOO=bar baz", "-w", "/tmp", "--user", "1000:1000",
		"--hostname", "podhost", "--tmpfs", "/scratch:mode=1777", "-v", rw+":/data", "-v", ro+":/ro:ro",
		"--rootfs", root, "/bin/sh", "-c", script)
	e2e.WantKVs(t, e2e.KeyValues(r.Stdout), map[string]string{
		"foo": "bar baz", "cwd": "/tmp", "uid": "1000", "host": "podhost",
		"tmpfs": "ok", "rw": "ok", "ro": "refused", "rocontent": "readonly content",
	})
	if b, _ := os.ReadFile(filepath.Join(rw, "out")); string(b) != "written-by-container\n" {
		t.Errorf("host sees %q in the rw volume", b)
	}
	r = e2e.Podman(t, nil, "run", "--rm", "--read-only", "--rootfs", root, "/bin/touch", "/newfile")
	if r.Code == 0 {
		t.Errorf("--read-only rootfs accepted a write: %v", r)
	}
}

// podman run -d, then exec (with and without stdin), kill with a signal
// the container traps, logs, stop (TERM first) and wait for its status.
func TestPodmanDetachedLifecycle(t *testing.T) {
	t.Parallel()
	root := e2e.PodmanRootfs(t)
	name := e2e.PodmanName(t, "life")
	script := `trap 'echo got-usr1' USR1; trap 'echo got-term; exit 3' TERM
i=0; while true; do echo tick $i; i=$((i+1)); sleep 1 & wait $!; done`
	e2e.PodmanOK(t, "run", "-d", "--name", name, "--rootfs", root, "/bin/sh", "-c", script)

	t.Run("exec", func(t *testing.T) {
		r := e2e.Podman(t, nil, "exec", name, "/bin/sh", "-c", "echo in-exec; exit 5")
		if r.Code != 5 || !strings.Contains(r.Stdout, "in-exec") {
			t.Errorf("exec: %v", r)
		}
		r = e2e.Podman(t, strings.NewReader("via stdin\n"), "exec", "-i", name, "/bin/cat")
		if r.Code != 0 || r.Stdout != "via stdin\n" {
			t.Errorf("exec -i: %v", r)
		}
	})
	t.Run("kill and logs", func(t *testing.T) {
		e2e.PodmanOK(t, "kill", "-s", "USR1", name)
		e2e.WaitFor(t, func() bool { return strings.Contains(e2e.PodmanOK(t, "logs", name).Stdout, "got-usr1") }, "the container's USR1 trap in podman logs")
		if !strings.Contains(e2e.PodmanOK(t, "logs", name).Stdout, "tick 0") {
			t.Error("podman logs lacks the container's first line")
		}
	})
	t.Run("stop and wait", func(t *testing.T) {
		e2e.PodmanOK(t, "stop", "-t", "20", name)
		if r := e2e.PodmanOK(t, "wait", name); strings.TrimSpace(r.Stdout) != "3" {
			t.Errorf("podman wait printed %q, want the exit code 3", r.Stdout)
		}
		if !strings.Contains(e2e.PodmanOK(t, "logs", name).Stdout, "got-term") {
			t.Error("podman stop did not deliver TERM first")
		}
	})
}

func TestPodmanRmForceOfRunningContainer(t *testing.T) {
	t.Parallel()
	root := e2e.PodmanRootfs(t)
	name := e2e.PodmanName(t, "rmf")
	id := strings.TrimSpace(e2e.PodmanOK(t, "run", "-d", "--name", name, "--rootfs", root, "/bin/sh", "-c", "while true; do sleep 1; done").Stdout)
	e2e.PodmanOK(t, "rm", "-f", "-t", "0", name)
	e2e.AssertPodmanGone(t, id)
}

// The default rootful bridge network: the container reaches a server on
// the bridge's gateway, and a published port reaches httpd in the
// container.
func TestPodmanNetwork(t *testing.T) {
	t.Parallel()
	root := e2e.PodmanRootfs(t)
	var nets []struct {
		Subnets []struct {
			Gateway string `json:"gateway"`
		} `json:"subnets"`
	}
	if err := json.Unmarshal([]byte(e2e.PodmanOK(t, "network", "inspect", "podman").Stdout), &nets); err != nil || len(nets) == 0 || len(nets[0].Subnets) == 0 {
		t.Fatalf("podman network inspect podman: %v", err)
	}
	gw := nets[0].Subnets[0].Gateway

	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello from the host\n") })}
	go srv.Serve(ln)
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	// busybox nc, not wget: Debian's static busybox wget crashes even on
	// the host.
	r := e2e.PodmanOK(t, "run", "--rm", "--rootfs", root, "/bin/sh", "-c",
		fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | nc %s %d`, gw, port))
	if !strings.HasSuffix(r.Stdout, "\r\n\r\nhello from the host\n") {
		t.Errorf("container fetched %q from the host on the bridge gateway %s", r.Stdout, gw)
	}

	hostPort := freePort(t)
	name := e2e.PodmanName(t, "httpd")
	e2e.PodmanOK(t, "run", "-d", "--name", name, "-p", fmt.Sprintf("%d:8080", hostPort), "--rootfs", root, "/bin/httpd", "-f", "-p", "8080", "-h", "/www")
	var body string
	e2e.WaitFor(t, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", hostPort))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == 200
	}, "httpd in the container answering on the published port")
	if body != "served from a VM\n" {
		t.Errorf("published port served %q", body)
	}
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// --memory and --cpus: the limits hold inside the guest (the container's
// cgroup there) and size the VM: memory limit plus overhead, vCPUs from
// the CPU quota.
func TestPodmanMemoryAndCPUs(t *testing.T) {
	t.Parallel()
	root := e2e.PodmanRootfs(t)
	script := `cg=$(cut -d: -f3 /proc/self/cgroup)
echo memmax=$(cat /sys/fs/cgroup$cg/memory.max)
echo cpumax=$(cat /sys/fs/cgroup$cg/cpu.max)
echo memtotal=$(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2)
echo cpus=$(grep -c ^processor /proc/cpuinfo)`
	r := e2e.PodmanOK(t, "run", "--rm", "--memory", "300m", "--cpus", "2", "--rootfs", root, "/bin/sh", "-c", script)
	kv := e2e.KeyValues(r.Stdout)
	e2e.WantKV(t, kv, "memmax", "314572800")
	e2e.WantKV(t, kv, "cpumax", "200000 100000")
	if !e2e.IsSkiff() {
		return
	}
	e2e.WantKV(t, kv, "cpus", "2")
	// 300 MiB plus the default 256 MiB overhead, less what the guest
	// kernel keeps for itself.
	var kb int
	fmt.Sscan(kv["memtotal"], &kb)
	if kb < 450<<10 || kb > 556<<10 {
		t.Errorf("guest MemTotal %d kB, want a VM of 556 MiB", kb)
	}
}

// podman run -t on a real terminal: the container gets a terminal in the
// guest, and resizing the caller's terminal reaches it.
func TestPodmanTerminal(t *testing.T) {
	t.Parallel()
	root := e2e.PodmanRootfs(t)
	master, slave := e2e.OpenPty(t)
	e2e.SetSize(t, slave, 24, 80)
	ctx, cancel := context.WithTimeout(context.Background(), 2*e2e.CmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "podman", "--runtime", e2e.Bin(), "run", "--rm", "-it", "--rootfs", root, e2e.SizeLoop()[0], e2e.SizeLoop()[1], e2e.SizeLoop()[2])
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tr := e2e.ReadTerminal(master)
	tr.WaitFor(t, "/dev/pts/", nil)
	// podman follows its own terminal's size (SIGWINCH) and resizes the
	// container's console.
	e2e.SetSize(t, slave, 33, 101)
	syscall.Kill(cmd.Process.Pid, syscall.SIGWINCH)
	tr.WaitFor(t, "size=33 101", func() { master.Write([]byte("\n")) })
	master.Write([]byte("q\n"))
	e2e.WaitExit(t, cmd, 3, "podman run -t", tr)
}

// podman pause / unpause: the container stops running and continues.
func TestPodmanPauseUnpause(t *testing.T) {
	t.Parallel()
	root := e2e.PodmanRootfs(t)
	name := e2e.PodmanName(t, "pause")
	e2e.PodmanOK(t, "run", "-d", "--name", name, "--rootfs", root, "/bin/sh", "-c", "i=0; while true; do echo $i; i=$((i+1)); sleep 0.2; done")
	e2e.WaitFor(t, func() bool { return strings.Contains(e2e.PodmanOK(t, "logs", name).Stdout, "3") }, "output before pausing")
	e2e.PodmanOK(t, "pause", name)
	if st := strings.TrimSpace(e2e.PodmanOK(t, "inspect", "--format", "{{.State.Status}}", name).Stdout); st != "paused" {
		t.Errorf("status %q after pause, want paused", st)
	}
	n1 := len(e2e.PodmanOK(t, "logs", name).Stdout)
	time.Sleep(1500 * time.Millisecond)
	if n2 := len(e2e.PodmanOK(t, "logs", name).Stdout); n2 != n1 {
		t.Errorf("a paused container wrote %d more bytes", n2-n1)
	}
	e2e.PodmanOK(t, "unpause", name)
	e2e.WaitFor(t, func() bool { return len(e2e.PodmanOK(t, "logs", name).Stdout) > n1 }, "output after unpausing")
}

// --network none: the guest has loopback only.
func TestPodmanNetworkNone(t *testing.T) {
	t.Parallel()
	root := e2e.PodmanRootfs(t)
	r := e2e.PodmanOK(t, "run", "--rm", "--network", "none", "--rootfs", root, "/bin/sh", "-c", "cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d ' '")
	if got := strings.Fields(r.Stdout); len(got) != 1 || got[0] != "lo" {
		t.Errorf("interfaces with --network none: %q, want only lo", r.Stdout)
	}
}
