// Package cri is skiff's end-to-end suite through Kubernetes' Container
// Runtime Interface: a private containerd (Debian's, with its CRI plugin)
// runs pods with two runtime handlers, "runc" (the reference: the suite
// must pass there, which proves it honest) and "skiff" (containerd's runc
// shim with BinaryName = $SKIFF_BIN), driven by a CRI client written with
// k8s.io/cri-api.
//
// Everything lives in one temp dir: containerd's root, state and socket,
// the runtimes' roots, the CNI configuration and IPAM state, the pods'
// volumes and logs. Images are built here from Debian's busybox-static
// and imported with ctr: no registry.
//
// The package is skipped when SKIFF_BIN is unset (as CI sets it), and in
// -short mode. Handlers can be restricted with SKIFF_CRI_HANDLERS=runc.
package cri

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	skiffBin string
	// tmpDir holds all of the suite's files; short, for socket paths.
	tmpDir string
	// sock is containerd's grpc socket.
	sock string
	// containerdVersion is what containerd's CRI says it is.
	containerdVersion string
	// runtimeRoots maps a handler to the --root its shim passes (Root
	// option + "/k8s.io", the namespace).
	runtimeRoots = map[string]string{}
	// bridgeName is the CNI bridge of the suite's pods.
	bridgeName string
	// cgroupParent holds the pods' host cgroups (cgroupfs paths).
	cgroupParent = fmt.Sprintf("/skiff-cri-%d", os.Getpid())
	cri          *client
	// handlers are the runtime handlers the tests run for, in order.
	handlers = []string{"runc", "skiff"}
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		fmt.Println("tests/cri: skipped in -short mode (needs root, containerd and VMs)")
		return 0
	}
	skiffBin = os.Getenv("SKIFF_BIN")
	if skiffBin == "" {
		fmt.Println("tests/cri: skipped: SKIFF_BIN is unset (set it to the built bin/skiff to run the CRI suite)")
		return 0
	}
	abs, err := filepath.Abs(skiffBin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests/cri:", err)
		return 1
	}
	skiffBin = abs
	if fi, err := os.Stat(skiffBin); err != nil || fi.Mode()&0o111 == 0 {
		fmt.Fprintf(os.Stderr, "tests/cri: SKIFF_BIN %s is missing or not executable: run make all\n", skiffBin)
		return 1
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "tests/cri: must run as root (containerd, mounts, network namespaces, VMs)")
		return 1
	}
	for _, p := range []string{"containerd", "ctr", "containerd-shim-runc-v2", "runc"} {
		if _, err := exec.LookPath(p); err != nil {
			fmt.Fprintf(os.Stderr, "tests/cri: %s not found: run scripts/install-deps.sh\n", p)
			return 1
		}
	}
	for _, p := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, p)); err != nil {
			fmt.Fprintf(os.Stderr, "tests/cri: CNI plugin %s/%s missing: run scripts/install-deps.sh (containernetworking-plugins)\n", cniBinDir, p)
			return 1
		}
	}
	if hs := os.Getenv("SKIFF_CRI_HANDLERS"); hs != "" {
		handlers = strings.Split(hs, ",")
	}

	tmpDir, err = os.MkdirTemp("/tmp", "cri")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests/cri:", err)
		return 1
	}
	ctrd, err := startContainerd()
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests/cri: start containerd:", err)
	} else {
		containerdVersion = ctrd.version
		fmt.Printf("tests/cri: containerd %s, socket %s, handlers %s, skiff %s\n", ctrd.version, sock, strings.Join(handlers, ","), skiffBin)
		code = m.Run()
	}
	if leaks := teardown(ctrd); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "tests/cri: left behind after the suite (cleaned up by force):\n  %s\n", strings.Join(leaks, "\n  "))
		code = 1
	}
	return code
}

const cniBinDir = "/usr/lib/cni"

type containerd struct {
	cmd     *exec.Cmd
	done    chan error
	log     string
	version string
}

func startContainerd() (*containerd, error) {
	sock = filepath.Join(tmpDir, "c.sock")
	runtimeRoots["runc"] = filepath.Join(tmpDir, "runc", "k8s.io")
	runtimeRoots["skiff"] = filepath.Join(tmpDir, "sk", "k8s.io")
	// A bridge and a subnet of this run only: two suites (or podman's
	// cni-podman0) on one machine never share them.
	n := os.Getpid()
	bridgeName = fmt.Sprintf("skcri%d", n%100000)
	subnet := fmt.Sprintf("10.%d.%d.0/24", 200+n%50, (n/50)%250)

	cniConf := filepath.Join(tmpDir, "cni")
	if err := os.MkdirAll(cniConf, 0o755); err != nil {
		return nil, err
	}
	conflist := fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "skiff-cri",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": false,
      "ipMasq": false,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "dataDir": %q}
    },
    {"type": "loopback"}
  ]
}
`, bridgeName, subnet, filepath.Join(tmpDir, "ipam"))
	if err := os.WriteFile(filepath.Join(cniConf, "10-skiff-cri.conflist"), []byte(conflist), 0o644); err != nil {
		return nil, err
	}

	runcBin, _ := exec.LookPath("runc")
	// Both handlers are containerd's runc shim; only the binary differs.
	var runtimes string
	for _, h := range []struct{ name, bin string }{{"runc", runcBin}, {"skiff", skiffBin}} {
		runtimes += fmt.Sprintf(`      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.%[1]s]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.%[1]s.options]
          BinaryName = %[2]q
          Root = %[3]q
          SystemdCgroup = false
`, h.name, h.bin, filepath.Dir(runtimeRoots[h.name]))
	}
	config := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = %[5]q
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = %[6]q
    netns_mounts_under_state_dir = true
    restrict_oom_score_adj = true
    disable_apparmor = true
    enable_selinux = false
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
%[7]s    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = %[8]q
      conf_dir = %[9]q
      max_conf_num = 1
`,
		filepath.Join(tmpDir, "root"), filepath.Join(tmpDir, "state"),
		sock, sock+".ttrpc", filepath.Join(tmpDir, "opt"), pauseRef,
		runtimes, cniBinDir, cniConf)
	cfgPath := filepath.Join(tmpDir, "containerd.toml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		return nil, err
	}

	c := &containerd{log: filepath.Join(tmpDir, "containerd.log"), done: make(chan error, 1)}
	logf, err := os.Create(c.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	c.cmd = exec.Command("containerd", "--config", cfgPath, "--log-level", "info")
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C of `go test` reaches us, and we stop it.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { c.done <- c.cmd.Wait() }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-c.done:
			c.cmd = nil
			return nil, fmt.Errorf("containerd exited (%v):\n%s", err, tail(c.log, 20))
		default:
		}
		if _, err := os.Stat(sock); err == nil {
			if cri == nil {
				cri, err = dial(sock)
				if err != nil {
					return c, err
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			v, err := cri.rt.Version(ctx, versionRequest())
			cancel()
			if err == nil {
				c.version = v.RuntimeName + " " + v.RuntimeVersion + " (CRI " + v.RuntimeApiVersion + ")"
				break
			}
		}
		if time.Now().After(deadline) {
			return c, fmt.Errorf("containerd's CRI did not answer on %s within 30 s:\n%s", sock, tail(c.log, 20))
		}
		time.Sleep(50 * time.Millisecond)
	}

	archive := filepath.Join(tmpDir, "images.tar")
	if err := writeImageArchive(archive, map[string][]string{
		busyboxRef: nil,
		pauseRef:   {"/bin/sleep", "2147483647"},
	}); err != nil {
		return c, fmt.Errorf("build images: %w", err)
	}
	out, err := exec.Command("ctr", "-a", sock, "-n", "k8s.io", "images", "import", archive).CombinedOutput()
	if err != nil {
		return c, fmt.Errorf("ctr images import: %v: %s", err, out)
	}
	// The CRI plugin learns of imported images through events: wait until
	// it lists both.
	for _, ref := range []string{busyboxRef, pauseRef} {
		if err := cri.waitImage(ref, 10*time.Second); err != nil {
			return c, err
		}
	}
	return c, nil
}

// teardown removes every pod left, stops containerd, then ends whatever
// of the suite survived (shims, VMs, mounts, the bridge) and removes the
// temp dir. It returns what it had to clean up by force.
func teardown(c *containerd) []string {
	var leaks []string
	if cri != nil && c != nil && c.cmd != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		if pods, err := cri.listPods(ctx); err == nil {
			for _, p := range pods {
				leaks = append(leaks, "pod sandbox "+p)
				cri.rt.StopPodSandbox(ctx, stopPodRequest(p))
				cri.rt.RemovePodSandbox(ctx, removePodRequest(p))
			}
		}
		cancel()
	}
	if c != nil && c.cmd != nil {
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(15 * time.Second):
			c.cmd.Process.Kill()
			<-c.done
		}
	}
	if cri != nil {
		cri.conn.Close()
	}
	// Containers the runtimes still know of: delete --force each.
	for h, root := range runtimeRoots {
		bin := skiffBin
		if h == "runc" {
			bin = "runc"
		}
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			if e.IsDir() {
				out, err := exec.Command(bin, "--root", root, "delete", "--force", e.Name()).CombinedOutput()
				res := "delete --force: ok"
				if err != nil {
					res = fmt.Sprintf("delete --force: %v: %s", err, strings.TrimSpace(string(out)))
				}
				if _, err := os.Stat(filepath.Join(root, e.Name())); err == nil {
					res += "; its directory is still there"
				}
				leaks = append(leaks, fmt.Sprintf("%s container %s (%s)", h, e.Name(), res))
			}
		}
	}
	// Processes naming the temp dir (shims name containerd's socket, VMs
	// their runtime root): all were started by this suite.
	for _, p := range processesMentioning(tmpDir) {
		leaks = append(leaks, fmt.Sprintf("process %d: %s", p.pid, p.cmdline))
		syscall.Kill(p.pid, syscall.SIGKILL)
	}
	waitUntil(10*time.Second, func() bool { return len(processesMentioning(tmpDir)) == 0 })
	mounts := mountsUnder(tmpDir)
	for i := len(mounts) - 1; i >= 0; i-- {
		leaks = append(leaks, "mount "+mounts[i])
		syscall.Unmount(mounts[i], syscall.MNT_DETACH)
	}
	for _, c := range cgroupsBelow() {
		leaks = append(leaks, "cgroup "+c)
		syscall.Rmdir(c)
	}
	for _, d := range cgroupDirs() {
		syscall.Rmdir(d)
	}
	exec.Command("ip", "link", "del", bridgeName).Run()
	if len(leaks) > 0 || os.Getenv("SKIFF_CRI_KEEP") != "" {
		fmt.Fprintf(os.Stderr, "tests/cri: containerd's errors:\n%s\n", grepErrors(filepath.Join(tmpDir, "containerd.log"), 30))
	}
	if os.Getenv("SKIFF_CRI_KEEP") != "" {
		fmt.Fprintf(os.Stderr, "tests/cri: kept %s (SKIFF_CRI_KEEP)\n", tmpDir)
	} else if err := os.RemoveAll(tmpDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		leaks = append(leaks, "remove "+tmpDir+": "+err.Error())
	}
	return leaks
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// grepErrors returns the last n error lines of containerd's log.
func grepErrors(path string, n int) string {
	data, _ := os.ReadFile(path)
	var errs []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, "level=error") {
			errs = append(errs, l)
		}
	}
	if len(errs) > n {
		errs = errs[len(errs)-n:]
	}
	return strings.Join(errs, "\n")
}

func waitUntil(d time.Duration, f func() bool) bool {
	return waitPoll(d, 100*time.Millisecond, f)
}

// waitPoll calls f every interval until it returns true (then true) or d
// has passed (then false).
func waitPoll(d, every time.Duration, f func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(every)
	}
}
