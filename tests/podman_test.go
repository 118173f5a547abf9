package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// podman drives the runtime the way most users reach it: `podman
// --runtime`. Every container here is a VM when the runtime is skiff.

var (
	podmanRootfsOnce sync.Once
	podmanRootfsDir  string
	podmanRootfsErr  error
)

// podmanRootfs is a private copy of the fixture rootfs (podman writes mount
// points into a --rootfs), with a page for httpd.
func podmanRootfs(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatalf("podman is not installed (scripts/install-deps.sh installs it): %v", err)
	}
	podmanRootfsOnce.Do(func() {
		dir := filepath.Join(suiteDir, "podman-rootfs")
		if out, err := exec.Command("cp", "-a", rootfsDir, dir).CombinedOutput(); err != nil {
			podmanRootfsErr = fmt.Errorf("copy rootfs: %v: %s", err, out)
			return
		}
		os.MkdirAll(filepath.Join(dir, "www"), 0o755)
		podmanRootfsErr = os.WriteFile(filepath.Join(dir, "www", "index.html"), []byte("served from a VM\n"), 0o644)
		podmanRootfsDir = dir
	})
	if podmanRootfsErr != nil {
		t.Fatal(podmanRootfsErr)
	}
	return podmanRootfsDir
}

// podman runs `podman --runtime BIN args...`.
func podman(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*cmdTimeout)
	defer cancel()
	full := append([]string{"--runtime", runtimeBin}, args...)
	cmd := exec.CommandContext(ctx, "podman", full...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("podman %s did not finish within %v", strings.Join(args, " "), 2*cmdTimeout)
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("podman: %v", err)
	}
	return result{args: append([]string{"(podman)"}, args...), code: code, stdout: out.String(), stderr: errb.String()}
}

func podmanOK(t *testing.T, args ...string) result {
	t.Helper()
	r := podman(t, nil, args...)
	if r.code != 0 {
		t.Fatalf("unexpected failure: %v", r)
	}
	return r
}

// podmanName makes a container name unique to this test and removes the
// container at the end, then checks nothing of it is left on the host.
func podmanName(t *testing.T, name string) string {
	n := fmt.Sprintf("skiff-e2e-%s-%d", name, envCount.Add(1))
	t.Cleanup(func() {
		id := strings.TrimSpace(podman(t, nil, "inspect", "--format", "{{.Id}}", n).stdout)
		podman(t, nil, "rm", "-f", "-t", "0", n)
		if id != "" {
			assertPodmanGone(t, id)
		}
	})
	return n
}

// assertPodmanGone checks that a container podman removed left nothing:
// no state directory under the runtime's root, no process naming it.
func assertPodmanGone(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(settleTimeout)
	for {
		var leaks []string
		if _, err := os.Stat(filepath.Join("/run/skiff", id)); err == nil {
			leaks = append(leaks, "state directory /run/skiff/"+id)
		}
		for pid, cmd := range qemuProcesses() {
			if strings.Contains(string(cmd), id) {
				leaks = append(leaks, fmt.Sprintf("qemu %d", pid))
			}
		}
		if len(leaks) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("left after podman rm: %s", strings.Join(leaks, ", "))
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestPodmanRunStdioAndExitCode(t *testing.T) {
	t.Parallel()
	root := podmanRootfs(t)
	name := podmanName(t, "run")
	r := podman(t, nil, "run", "--name", name, "--rootfs", root, "/bin/sh", "-c", "echo out; echo err >&2; exit 7")
	if r.code != 7 {
		t.Errorf("exit code %d, want 7: %v", r.code, r)
	}
	if !strings.Contains(r.stdout, "out") || !strings.Contains(r.stderr, "err") || strings.Contains(r.stdout, "err") {
		t.Errorf("stdio mixed up: %v", r)
	}
	r = podman(t, strings.NewReader("piped in\n"), "run", "--rm", "-i", "--rootfs", root, "/bin/cat")
	if r.code != 0 || r.stdout != "piped in\n" {
		t.Errorf("run -i with stdin: %v", r)
	}
}

func TestPodmanRunOptions(t *testing.T) {
	t.Parallel()
	root := podmanRootfs(t)
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
	r := podmanOK(t, "run", "--rm", "-e", "FOO=bar baz", "-w", "/tmp", "--user", "1000:1000",
		"--hostname", "podhost", "--tmpfs", "/scratch:mode=1777", "-v", rw+":/data", "-v", ro+":/ro:ro",
		"--rootfs", root, "/bin/sh", "-c", script)
	kv := keyValues(r.stdout)
	wantKV(t, kv, "foo", "bar baz")
	wantKV(t, kv, "cwd", "/tmp")
	wantKV(t, kv, "uid", "1000")
	wantKV(t, kv, "host", "podhost")
	wantKV(t, kv, "tmpfs", "ok")
	wantKV(t, kv, "rw", "ok")
	wantKV(t, kv, "ro", "refused")
	wantKV(t, kv, "rocontent", "readonly content")
	if b, _ := os.ReadFile(filepath.Join(rw, "out")); string(b) != "written-by-container\n" {
		t.Errorf("host sees %q in the rw volume", b)
	}
	r = podman(t, nil, "run", "--rm", "--read-only", "--rootfs", root, "/bin/touch", "/newfile")
	if r.code == 0 {
		t.Errorf("--read-only rootfs accepted a write: %v", r)
	}
}

func TestPodmanDetachedLifecycle(t *testing.T) {
	t.Parallel()
	root := podmanRootfs(t)
	name := podmanName(t, "life")
	script := `trap 'echo got-usr1' USR1; trap 'echo got-term; exit 3' TERM
i=0; while true; do echo tick $i; i=$((i+1)); sleep 1 & wait $!; done`
	podmanOK(t, "run", "-d", "--name", name, "--rootfs", root, "/bin/sh", "-c", script)

	r := podman(t, nil, "exec", name, "/bin/sh", "-c", "echo in-exec; exit 5")
	if r.code != 5 || !strings.Contains(r.stdout, "in-exec") {
		t.Errorf("exec: %v", r)
	}
	r = podman(t, strings.NewReader("via stdin\n"), "exec", "-i", name, "/bin/cat")
	if r.code != 0 || r.stdout != "via stdin\n" {
		t.Errorf("exec -i: %v", r)
	}
	podmanOK(t, "kill", "-s", "USR1", name)
	waitFor(t, func() bool { return strings.Contains(podmanOK(t, "logs", name).stdout, "got-usr1") }, "the container's USR1 trap in podman logs")
	if !strings.Contains(podmanOK(t, "logs", name).stdout, "tick 0") {
		t.Error("podman logs lacks the container's first line")
	}
	podmanOK(t, "stop", "-t", "20", name)
	r = podmanOK(t, "wait", name)
	if strings.TrimSpace(r.stdout) != "3" {
		t.Errorf("podman wait printed %q, want the exit code 3", r.stdout)
	}
	if !strings.Contains(podmanOK(t, "logs", name).stdout, "got-term") {
		t.Error("podman stop did not deliver TERM first")
	}
}

func TestPodmanRmForceOfRunningContainer(t *testing.T) {
	t.Parallel()
	root := podmanRootfs(t)
	name := podmanName(t, "rmf")
	id := strings.TrimSpace(podmanOK(t, "run", "-d", "--name", name, "--rootfs", root, "/bin/sh", "-c", "while true; do sleep 1; done").stdout)
	podmanOK(t, "rm", "-f", "-t", "0", name)
	assertPodmanGone(t, id)
}

// The default rootful bridge network: the container reaches a server on
// the bridge's gateway, and a published port reaches httpd in the
// container.
func TestPodmanNetwork(t *testing.T) {
	t.Parallel()
	root := podmanRootfs(t)
	var nets []struct {
		Subnets []struct {
			Gateway string `json:"gateway"`
		} `json:"subnets"`
	}
	if err := json.Unmarshal([]byte(podmanOK(t, "network", "inspect", "podman").stdout), &nets); err != nil || len(nets) == 0 || len(nets[0].Subnets) == 0 {
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
	r := podmanOK(t, "run", "--rm", "--rootfs", root, "/bin/sh", "-c",
		fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | nc %s %d`, gw, port))
	if !strings.HasSuffix(r.stdout, "\r\n\r\nhello from the host\n") {
		t.Errorf("container fetched %q from the host on the bridge gateway %s", r.stdout, gw)
	}

	hostPort := freePort(t)
	name := podmanName(t, "httpd")
	podmanOK(t, "run", "-d", "--name", name, "-p", fmt.Sprintf("%d:8080", hostPort), "--rootfs", root, "/bin/httpd", "-f", "-p", "8080", "-h", "/www")
	var body string
	waitFor(t, func() bool {
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

// waitFor polls cond until it holds or stopTimeout passes.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(stopTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// --memory and --cpus: the limits hold inside the guest (the container's
// cgroup there) and size the VM: memory limit plus overhead, vCPUs from
// the CPU quota.
func TestPodmanMemoryAndCPUs(t *testing.T) {
	t.Parallel()
	root := podmanRootfs(t)
	script := `cg=$(cut -d: -f3 /proc/self/cgroup)
echo memmax=$(cat /sys/fs/cgroup$cg/memory.max)
echo cpumax=$(cat /sys/fs/cgroup$cg/cpu.max)
echo memtotal=$(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2)
echo cpus=$(grep -c ^processor /proc/cpuinfo)`
	r := podmanOK(t, "run", "--rm", "--memory", "300m", "--cpus", "2", "--rootfs", root, "/bin/sh", "-c", script)
	kv := keyValues(r.stdout)
	wantKV(t, kv, "memmax", "314572800")
	wantKV(t, kv, "cpumax", "200000 100000")
	if !isSkiff {
		return
	}
	wantKV(t, kv, "cpus", "2")
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
	root := podmanRootfs(t)
	master, slave := openPty(t)
	unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 80})
	ctx, cancel := context.WithTimeout(context.Background(), 2*cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "podman", "--runtime", runtimeBin, "run", "--rm", "-it", "--rootfs", root, sizeLoop[0], sizeLoop[1], sizeLoop[2])
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tr := readTerminal(master)
	tr.waitFor(t, "/dev/pts/", nil)
	// podman follows its own terminal's size (SIGWINCH) and resizes the
	// container's console.
	unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 33, Col: 101})
	syscall.Kill(cmd.Process.Pid, syscall.SIGWINCH)
	tr.waitFor(t, "size=33 101", func() { master.Write([]byte("\n")) })
	master.Write([]byte("q\n"))
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Errorf("podman run -t exited %d, want 3; terminal showed %q", code, tr)
	}
}

// podman pause / unpause: the container stops running and continues.
func TestPodmanPauseUnpause(t *testing.T) {
	t.Parallel()
	root := podmanRootfs(t)
	name := podmanName(t, "pause")
	podmanOK(t, "run", "-d", "--name", name, "--rootfs", root, "/bin/sh", "-c", "i=0; while true; do echo $i; i=$((i+1)); sleep 0.2; done")
	waitFor(t, func() bool { return strings.Contains(podmanOK(t, "logs", name).stdout, "3") }, "output before pausing")
	podmanOK(t, "pause", name)
	if st := strings.TrimSpace(podmanOK(t, "inspect", "--format", "{{.State.Status}}", name).stdout); st != "paused" {
		t.Errorf("status %q after pause, want paused", st)
	}
	n1 := len(podmanOK(t, "logs", name).stdout)
	time.Sleep(1500 * time.Millisecond)
	if n2 := len(podmanOK(t, "logs", name).stdout); n2 != n1 {
		t.Errorf("a paused container wrote %d more bytes", n2-n1)
	}
	podmanOK(t, "unpause", name)
	waitFor(t, func() bool { return len(podmanOK(t, "logs", name).stdout) > n1 }, "output after unpausing")
}

// --network none: the guest has loopback only.
func TestPodmanNetworkNone(t *testing.T) {
	t.Parallel()
	root := podmanRootfs(t)
	r := podmanOK(t, "run", "--rm", "--network", "none", "--rootfs", root, "/bin/sh", "-c", "cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d ' '")
	if got := strings.Fields(r.stdout); len(got) != 1 || got[0] != "lo" {
		t.Errorf("interfaces with --network none: %q, want only lo", r.stdout)
	}
}
