package tests

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-oci/skiff/internal/dirsnap"
	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// What `skiff install` writes, per target, below --prefix.
var installFiles = map[string]string{
	"podman":     "/etc/containers/containers.conf.d/50-skiff.conf",
	"crio":       "/etc/crio/crio.conf.d/50-skiff.conf",
	"containerd": "/etc/containerd/config.toml",
	"kubernetes": "/etc/skiff/runtimeclass.yaml",
}

// containerdPackaged is a config.toml as an administrator has it: comments,
// an existing runc runtime, no final newline.
const containerdPackaged = `# /etc/containerd/config.toml, edited by hand
version = 2

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.6"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"   # the default
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = true`

// tree maps every file below dir to its mode and content.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	m, err := dirsnap.Of(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sameTree(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s is\n%q\nwant\n%q", what, k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: %s is left over", what, k)
		}
	}
}

func putFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Each target, into a root that already holds the administrator's files:
// install, install again (nothing changes), uninstall (byte for byte what
// was there before, modes included, no backups left).
func TestInstallRoundTrip(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewSerialEnv(t)
	prefix := filepath.Join(e.Dir, "host")
	putFile(t, prefix+installFiles["containerd"], containerdPackaged)
	putFile(t, prefix+installFiles["crio"], "[crio.runtime]\ndefault_runtime = \"runc\"\n")
	putFile(t, prefix+"/etc/containers/containers.conf", "[engine]\ncgroup_manager = \"cgroupfs\"\n")
	before := tree(t, prefix)

	for _, target := range []string{"podman", "crio", "containerd", "kubernetes"} {
		path := prefix + installFiles[target]
		r := e.MustOK(e.RT("install", "--for", target, "--prefix", prefix))
		if !strings.Contains(r.Stdout, path) || !(strings.Contains(r.Stdout, "created") || strings.Contains(r.Stdout, "updated")) {
			t.Errorf("install --for %s did not report writing %s: %v", target, path, r)
		}
		installed := tree(t, prefix)
		r = e.MustOK(e.RT("install", "--for", target, "--prefix", prefix))
		if !strings.Contains(r.Stdout, "unchanged "+path) || strings.Contains(r.Stdout, "created") || strings.Contains(r.Stdout, "updated") {
			t.Errorf("second install --for %s changed something: %v", target, r)
		}
		sameTree(t, "after the second install --for "+target, tree(t, prefix), installed)
	}

	data, _ := os.ReadFile(prefix + installFiles["containerd"])
	if !strings.HasPrefix(string(data), containerdPackaged+"\n") || !strings.Contains(string(data), `BinaryName = "/usr/local/bin/skiff"`) {
		t.Errorf("containerd's config.toml is not the original plus skiff's runtime:\n%s", data)
	}
	if bak, _ := os.ReadFile(prefix + installFiles["containerd"] + ".skiff-backup"); string(bak) != containerdPackaged {
		t.Errorf("containerd's backup is\n%s", bak)
	}
	// --root given to skiff is the root the client passes back to it.
	data, _ = os.ReadFile(prefix + installFiles["crio"])
	for _, want := range []string{`[crio.runtime.runtimes.skiff]`, `runtime_type = "oci"`, `runtime_root = "` + e.Root + `"`, `runtime_path = "/usr/local/bin/skiff"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("CRI-O drop-in lacks %s:\n%s", want, data)
		}
	}
	if c := tree(t, prefix)["/etc/containers/containers.conf"]; c != before["/etc/containers/containers.conf"] {
		t.Errorf("install --for podman touched containers.conf itself: %q", c)
	}

	for _, target := range []string{"kubernetes", "containerd", "crio", "podman"} {
		e.MustOK(e.RT("uninstall", "--for", target, "--prefix", prefix))
	}
	sameTree(t, "after uninstall", tree(t, prefix), before)
	r := e.MustOK(e.RT("uninstall", "--for", "crio", "--prefix", prefix))
	if strings.Contains(r.Stdout, "removed") || strings.Contains(r.Stdout, "restored") {
		t.Errorf("a second uninstall changed something: %v", r)
	}
	sameTree(t, "after a second uninstall", tree(t, prefix), before)
}

// --dry-run prints every path and its full content, and writes nothing; the
// RuntimeClass is sized from --config.
func TestInstallDryRun(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewSerialEnv(t)
	prefix := filepath.Join(e.Dir, "host")
	putFile(t, prefix+installFiles["containerd"], containerdPackaged)
	before := tree(t, prefix)
	for _, target := range []string{"podman", "crio", "containerd"} {
		r := e.MustOK(e.RT("install", "--for", target, "--prefix", prefix, "--dry-run"))
		if !strings.HasPrefix(r.Stdout, "# "+prefix+installFiles[target]+" (would ") || !strings.Contains(r.Stdout, "skiff") {
			t.Errorf("dry run for %s: %v", target, r)
		}
	}
	r := e.MustOK(e.RT("install", "--for", "containerd", "--prefix", prefix, "--dry-run"))
	if !strings.Contains(r.Stdout, containerdPackaged) {
		t.Errorf("dry run does not show the whole config.toml: %v", r)
	}

	cfg := filepath.Join(e.Dir, "config.toml")
	putFile(t, cfg, "[hypervisor]\ndefault_memory = 1024\ndefault_vcpus = 2\n")
	r = e.MustOK(e.RT("--config", cfg, "install", "--for", "kubernetes", "--prefix", prefix, "--dry-run"))
	for _, want := range []string{"kind: RuntimeClass\n", "handler: skiff\n", "memory: 1280Mi\n", "cpu: 500m\n"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("runtime class dry run lacks %q: %v", want, r)
		}
	}
	sameTree(t, "after dry runs", tree(t, prefix), before)
}

// Mistakes are refused with a message, and nothing is written.
func TestInstallRefusals(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewSerialEnv(t)
	prefix := filepath.Join(e.Dir, "host")
	putFile(t, prefix+installFiles["containerd"], "# version 1: no version line\n[plugins.cri]\n")
	before := tree(t, prefix)
	for _, args := range [][]string{
		{"install", "--for", "docker", "--prefix", prefix},
		{"install", "--prefix", prefix},
		{"install", "--for", "crio", "--prefix", prefix, "--binary", "skiff"},
		{"install", "--for", "containerd", "--prefix", prefix},
	} {
		msg := e.MustFail(e.RT(args...))
		t.Logf("%v: %s", args, strings.TrimSpace(msg))
	}
	sameTree(t, "after refusals", tree(t, prefix), before)
}

// podman itself reads the drop-in: `podman --runtime skiff info` finds the
// runtime named skiff at the path install wrote.
func TestInstallPodmanReadsIt(t *testing.T) {
	e2e.SkiffOnly(t)
	podman, err := exec.LookPath("podman")
	if err != nil {
		t.Fatalf("podman is not installed (scripts/install-deps.sh installs it): %v", err)
	}
	e := e2e.NewSerialEnv(t)
	prefix := filepath.Join(e.Dir, "host")
	e.MustOK(e.RT("install", "--for", "podman", "--prefix", prefix, "--binary", e2e.Bin()))
	ctx, cancel := context.WithTimeout(context.Background(), e2e.CmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, podman, "--runtime", "skiff", "info", "--format", "{{.Host.OCIRuntime.Name}} {{.Host.OCIRuntime.Path}}")
	// CONTAINERS_CONF names the one file podman reads instead of /etc's.
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+prefix+installFiles["podman"])
	// stdout only: podman warns on stderr about what it finds on the
	// machine (a CNI config whose plugins are not installed, on a fresh
	// Debian 12), which says nothing about the runtime.
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("podman info: %v\n%s%s", err, out, stderr.Bytes())
	}
	if got, want := strings.TrimSpace(string(out)), "skiff "+e2e.Bin(); got != want {
		t.Errorf("podman's runtime: %q, want %q (stderr: %q)", got, want, stderr.String())
	}
	e.MustOK(e.RT("uninstall", "--for", "podman", "--prefix", prefix))
}

// containerd reads the edited config.toml, where it is installed.
func TestInstallContainerdReadsIt(t *testing.T) {
	e2e.SkiffOnly(t)
	containerd, err := exec.LookPath("containerd")
	if err != nil {
		t.Fatalf("containerd is not installed (scripts/install-deps.sh installs it): %v", err)
	}
	e := e2e.NewSerialEnv(t)
	configs := map[string]string{"hand-edited": containerdPackaged}
	// The file the distribution's package installed, if there is one.
	if data, err := os.ReadFile("/etc/containerd/config.toml"); err == nil {
		configs["packaged"] = string(data)
	}
	for name, content := range configs {
		prefix := filepath.Join(e.Dir, name)
		path := prefix + installFiles["containerd"]
		putFile(t, path, content)
		e.MustOK(e.RT("install", "--for", "containerd", "--prefix", prefix))
		ctx, cancel := context.WithTimeout(context.Background(), e2e.CmdTimeout)
		out, err := exec.CommandContext(ctx, containerd, "--config", path, "config", "dump").CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("%s: containerd config dump: %v\n%s", name, err, out)
		}
		for _, want := range []string{`[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.skiff]`, `runtime_type = "io.containerd.runc.v2"`, `BinaryName = "/usr/local/bin/skiff"`} {
			if !bytes.Contains(out, []byte(want)) {
				t.Errorf("%s: containerd config dump lacks %s:\n%s", name, want, out)
			}
		}
		e.MustOK(e.RT("uninstall", "--for", "containerd", "--prefix", prefix))
		if data, _ := os.ReadFile(path); string(data) != content {
			t.Errorf("%s: after uninstall config.toml is\n%s", name, data)
		}
	}
}
