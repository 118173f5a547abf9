package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	podmanRootfsOnce sync.Once
	podmanRootfsDir  string
	podmanRootfsErr  error
)

// PodmanRootfs is a private copy of the fixture rootfs (podman writes mount
// points into a --rootfs), with a page for httpd. It fails t if podman is
// not installed.
func PodmanRootfs(t *testing.T) string {
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

// Podman runs `podman --runtime BIN args...`.
func Podman(t *testing.T, stdin io.Reader, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*CmdTimeout)
	defer cancel()
	full := append([]string{"--runtime", runtimeBin}, args...)
	cmd := exec.CommandContext(ctx, "podman", full...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("podman %s did not finish within %v", strings.Join(args, " "), 2*CmdTimeout)
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("podman: %v", err)
	}
	return Result{Args: append([]string{"(podman)"}, args...), Code: code, Stdout: out.String(), Stderr: errb.String()}
}

// PodmanOK is Podman with no stdin that must succeed.
func PodmanOK(t *testing.T, args ...string) Result {
	t.Helper()
	r := Podman(t, nil, args...)
	if r.Code != 0 {
		t.Fatalf("unexpected failure: %v", r)
	}
	return r
}

// PodmanName makes a container name unique to this test and removes the
// container at the end, then checks nothing of it is left on the host.
func PodmanName(t *testing.T, name string) string {
	n := fmt.Sprintf("skiff-e2e-%s-%d", name, envCount.Add(1))
	t.Cleanup(func() {
		id := strings.TrimSpace(Podman(t, nil, "inspect", "--format", "{{.Id}}", n).Stdout)
		Podman(t, nil, "rm", "-f", "-t", "0", n)
		if id != "" {
			AssertPodmanGone(t, id)
		}
	})
	return n
}

// AssertPodmanGone checks that a container podman removed left nothing:
// no state directory under the runtime's root, no process naming it.
func AssertPodmanGone(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(SettleTimeout)
	for {
		var leaks []string
		if _, err := os.Stat(filepath.Join("/run/skiff", id)); err == nil {
			leaks = append(leaks, "state directory /run/skiff/"+id)
		}
		for pid, cmd := range QEMUProcesses() {
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
