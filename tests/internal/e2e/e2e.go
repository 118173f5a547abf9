// Package e2e is the harness of skiff's end-to-end suite (tests/): it finds
// the runtime under test, builds the shared busybox rootfs, gives each test
// a private --root and directory, runs the runtime's binary as a user would
// and checks that nothing of a test is left behind (processes, mounts,
// state directories, qemu). It also holds the fixtures several test files
// share: bundle edits, network namespaces, terminals, podman, cgroups.
//
// It drives the runtime only through its command line: it must not import
// skiff's own packages (sandbox/, agent/, ...), so that the same suite runs
// against runc (SKIFF_E2E_RUNTIME=/usr/sbin/runc).
package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	// CmdTimeout bounds every runtime invocation: a hung runtime fails its
	// test instead of hanging the suite. Generous, since a VM boots under
	// TCG emulation on the project's machines.
	CmdTimeout = 60 * time.Second
	// StopTimeout bounds waiting for a signalled container to stop, and
	// every other poll for something the container does.
	StopTimeout = 30 * time.Second
	// SettleTimeout is how long helper processes get to exit after the
	// verb that ended them has returned, before they count as leaked.
	SettleTimeout = 10 * time.Second
)

// The suite's settings, set once by Main before any test runs and only
// read afterwards.
var (
	// runtimeBin is the absolute path of the runtime under test.
	runtimeBin string
	// isSkiff is false when the suite runs against another runtime (runc):
	// checks that depend on a guest VM or on skiff-only flags are skipped.
	isSkiff bool
	// suiteDir holds every file the suite creates: the fixture rootfs and
	// one directory per test (its --root and its bundles). Short on purpose,
	// because unix socket paths under --root are limited to 108 bytes.
	suiteDir string
	// rootfsDir is the shared busybox rootfs; containers only read it.
	rootfsDir string
)

// Bin is the absolute path of the runtime under test.
func Bin() string { return runtimeBin }

// IsSkiff is whether the runtime under test is skiff (not runc).
func IsSkiff() bool { return isSkiff }

// RootfsDir is the shared busybox rootfs. Containers only read it.
func RootfsDir() string { return rootfsDir }

// SkiffOnly skips a check that holds only for a VM runtime, when the suite
// runs against another one (runc). Under skiff it never skips.
func SkiffOnly(t *testing.T) {
	t.Helper()
	if !isSkiff {
		t.Skipf("skiff-specific; the runtime under test is %s", runtimeBin)
	}
}

// Main is the suite's TestMain: it sets the suite up, runs the tests and
// fails the run if anything of them is left on the host. It returns the
// exit code.
func Main(m *testing.M) int {
	// -short is how a developer runs unit tests only: the e2e suite needs
	// a built binary, root and minutes of VM time.
	flag.Parse()
	if testing.Short() {
		fmt.Println("tests: end-to-end suite skipped in -short mode")
		return 0
	}
	bin, skiff, err := findRuntime()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
		return 1
	}
	runtimeBin, isSkiff = bin, skiff
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "tests: the end-to-end suite must run as root (containers, mounts, VMs)")
		return 1
	}
	qemuBefore := QEMUProcesses()

	suiteDir, err = os.MkdirTemp("/tmp", "sk")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
		return 1
	}
	rootfsDir = filepath.Join(suiteDir, "rootfs")
	if err := buildRootfs(rootfsDir); err != nil {
		fmt.Fprintln(os.Stderr, "tests: build busybox rootfs:", err)
		os.RemoveAll(suiteDir)
		return 1
	}
	fmt.Printf("tests: runtime %s (skiff-specific checks %s)\n", runtimeBin, map[bool]string{true: "on", false: "off"}[isSkiff])

	code := m.Run()

	// Whatever individual tests missed (or leaked after their own check
	// ran) shows up here, once every test and its clean-ups are done.
	if leaks := FindLeaks(suiteDir, nil); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "tests: leaks after the whole suite:\n  %s\n", strings.Join(leaks, "\n  "))
		code = 1
	} else {
		os.RemoveAll(suiteDir)
	}
	if isSkiff {
		for pid, cmd := range QEMUProcesses() {
			// Only the suite's own VMs: their sockets live under suiteDir.
			// Another user's qemu on the same machine is not a leak.
			if _, old := qemuBefore[pid]; !old && strings.Contains(string(cmd), suiteDir) {
				fmt.Fprintf(os.Stderr, "tests: qemu process %d left running after the suite: %s\n", pid, procCmdline(cmd))
				code = 1
			}
		}
	}
	return code
}

// findRuntime resolves the binary under test and whether it is skiff.
func findRuntime() (string, bool, error) {
	bin, skiff := os.Getenv("SKIFF_E2E_RUNTIME"), false
	if bin == "" {
		bin, skiff = os.Getenv("SKIFF_BIN"), true
		if bin == "" {
			bin = filepath.Join("..", "bin", "skiff")
		}
	} else {
		skiff = strings.Contains(filepath.Base(bin), "skiff")
	}
	if !strings.Contains(bin, "/") {
		p, err := exec.LookPath(bin)
		if err != nil {
			return "", false, fmt.Errorf("runtime %q not found in PATH", bin)
		}
		bin = p
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return "", false, err
	}
	fi, err := os.Stat(abs)
	if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", false, fmt.Errorf("runtime binary %s is missing or not executable: build it (go build -o bin/skiff .) or set SKIFF_BIN, or SKIFF_E2E_RUNTIME=/usr/sbin/runc; use -short to skip the e2e suite", abs)
	}
	return abs, skiff, nil
}

// Applets the tests use; each becomes a symlink to busybox in /bin.
var applets = []string{
	"sh", "echo", "cat", "id", "hostname", "pwd", "env", "sleep", "true",
	"false", "touch", "ls", "test", "mkdir", "kill", "uname", "stat",
	"mount", "ln", "reboot", "grep", "insmod", "head", "od", "tr", "date",
	"httpd", "nc", "printf", "cut", "tail", "dd",
}

// buildRootfs makes a minimal rootfs around a static busybox. Mount points
// the tests use exist in advance, so that no runtime needs to write into
// this shared, read-only-used tree.
func buildRootfs(dir string) error {
	src := "/bin/busybox"
	out, err := exec.Command("file", "-L", src).CombinedOutput()
	if err == nil && !strings.Contains(string(out), "statically linked") {
		return fmt.Errorf("%s is not statically linked (install Debian's busybox-static)", src)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("%w (install Debian's busybox-static)", err)
	}
	for _, d := range []string{
		"bin", "etc", "proc", "sys", "dev", "tmp", "root", "home/user",
		"srv/app", "mnt/ro", "mnt/rw", "scratch", "data",
		"var/lib/containers", "var/lib/docker", "var/lib/buildkit",
	} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), data, 0o755); err != nil {
		return err
	}
	for _, a := range applets {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
		"etc/group":  "root:x:0:\nuser:x:1000:\nextra:x:2000:\n",
		"etc/myfile": "", // mount point for a single-file bind mount
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return os.Chown(filepath.Join(dir, "home/user"), 1000, 1000)
}
