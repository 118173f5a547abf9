package installer

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/skiff-oci/skiff/config"
	"github.com/skiff-oci/skiff/internal/dirsnap"
)

// snapshot maps every file below dir to its content and mode.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m, err := dirsnap.Of(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func sameFiles(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: files %v, want %v", what, keys(got), keys(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s is\n%s\nwant\n%s", what, k, got[k], v)
		}
	}
}

func writeFile(t *testing.T, p, content string, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func mustInstall(t *testing.T, tg Target, o Options) *Result {
	t.Helper()
	r, err := Install(tg, o)
	if err != nil {
		t.Fatalf("install --for %s: %v", tg, err)
	}
	return r
}

func mustUninstall(t *testing.T, tg Target, o Options) *Result {
	t.Helper()
	r, err := Uninstall(tg, o)
	if err != nil {
		t.Fatalf("uninstall --for %s: %v", tg, err)
	}
	return r
}

// Every target into an empty root: created once, unchanged the second
// time, and gone after uninstall.
func TestInstallIdempotentAndUndone(t *testing.T) {
	for _, tg := range Targets {
		t.Run(string(tg), func(t *testing.T) {
			root := t.TempDir()
			o := Options{Prefix: root}
			r := mustInstall(t, tg, o)
			if !r.Changed() || len(r.Changes) != 1 || r.Changes[0].Action != Created {
				t.Fatalf("first install: %+v, want one file created", r.Changes)
			}
			after := snapshot(t, root)
			r = mustInstall(t, tg, o)
			if r.Changed() {
				t.Errorf("second install changed something: %+v", r.Changes)
			}
			sameFiles(t, "after second install", snapshot(t, root), after)

			r = mustUninstall(t, tg, o)
			if len(r.Changes) != 1 || r.Changes[0].Action != Removed {
				t.Errorf("uninstall: %+v, want the file removed", r.Changes)
			}
			sameFiles(t, "after uninstall", snapshot(t, root), map[string]string{})
			if r := mustUninstall(t, tg, o); r.Changed() {
				t.Errorf("second uninstall changed something: %+v", r.Changes)
			}
		})
	}
}

// A file that was there is backed up once, and uninstall puts it back
// byte for byte, mode included.
func TestBackupRestored(t *testing.T) {
	cases := map[Target]struct{ path, content string }{
		Podman: {PodmanDropIn, "[engine]\nruntime = \"crun\"\n"},
		CRIO:   {CRIODropIn, "# the administrator's own\n[crio.runtime]\nlog_level = \"info\"\n"},
		Containerd: {ContainerdConfig, `# containerd 1.6 as packaged, with comments
version = 2
root = "/var/lib/containerd"

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.6"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = true`}, // no final newline, on purpose
		Kubernetes: {RuntimeClassFile, "kind: Something\n"},
	}
	for tg, c := range cases {
		t.Run(string(tg), func(t *testing.T) {
			root := t.TempDir()
			p := filepath.Join(root, c.path)
			writeFile(t, p, c.content, 0o640)
			before := snapshot(t, root)
			o := Options{Prefix: root, Binary: "/opt/skiff/bin/skiff"}

			r := mustInstall(t, tg, o)
			if r.Changes[0].Action != Updated || r.Changes[0].Backup != p+BackupSuffix {
				t.Fatalf("install: %+v, want updated with a backup", r.Changes)
			}
			bak, err := os.ReadFile(p + BackupSuffix)
			if err != nil || string(bak) != c.content {
				t.Fatalf("backup: %q, %v; want the original", bak, err)
			}
			data, _ := os.ReadFile(p)
			if !bytes.Contains(data, []byte("/opt/skiff/bin/skiff")) && tg != Kubernetes {
				t.Errorf("installed file does not name the binary:\n%s", data)
			}
			if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
				t.Errorf("mode %v after install, want the original 0640", fi.Mode())
			}
			installed := snapshot(t, root)
			if r := mustInstall(t, tg, o); r.Changed() {
				t.Errorf("second install changed something: %+v", r.Changes)
			}
			sameFiles(t, "after second install", snapshot(t, root), installed)

			r = mustUninstall(t, tg, o)
			if r.Changes[0].Action != Restored {
				t.Errorf("uninstall: %+v, want restored", r.Changes)
			}
			sameFiles(t, "after uninstall", snapshot(t, root), before)
		})
	}
}

// A new binary path updates the file but keeps the first backup, which is
// the only one that holds the file as it was before skiff.
func TestReinstallKeepsFirstBackup(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, CRIODropIn)
	writeFile(t, p, "original\n", 0o644)
	mustInstall(t, CRIO, Options{Prefix: root})
	r := mustInstall(t, CRIO, Options{Prefix: root, Binary: "/usr/bin/skiff"})
	if r.Changes[0].Action != Updated {
		t.Fatalf("install with a new binary: %+v, want updated", r.Changes)
	}
	if bak, _ := os.ReadFile(p + BackupSuffix); string(bak) != "original\n" {
		t.Errorf("backup is %q, want the original", bak)
	}
	mustUninstall(t, CRIO, Options{Prefix: root})
	if data, _ := os.ReadFile(p); string(data) != "original\n" {
		t.Errorf("after uninstall: %q, want the original", data)
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	for _, tg := range Targets {
		t.Run(string(tg), func(t *testing.T) {
			root := t.TempDir()
			var out bytes.Buffer
			r := mustInstall(t, tg, Options{Prefix: root, DryRun: true, Out: &out})
			if !r.Changed() {
				t.Errorf("dry run reports no change: %+v", r.Changes)
			}
			if got := snapshot(t, root); len(got) != 0 {
				t.Errorf("dry run wrote %v", keys(got))
			}
			p := r.Changes[0].Path
			if !strings.HasPrefix(out.String(), "# "+p+" (would create)\n") {
				t.Errorf("dry run output does not start with the path:\n%s", out.String())
			}
			// The content printed is what a real install writes.
			mustInstall(t, tg, Options{Prefix: root})
			data, _ := os.ReadFile(p)
			if !strings.Contains(out.String(), string(data)) {
				t.Errorf("dry run printed\n%s\ninstall wrote\n%s", out.String(), data)
			}
			before := snapshot(t, root)
			out.Reset()
			mustUninstall(t, tg, Options{Prefix: root, DryRun: true, Out: &out})
			sameFiles(t, "after dry-run uninstall", snapshot(t, root), before)
			if !strings.Contains(out.String(), "would remove") {
				t.Errorf("dry-run uninstall printed\n%s", out.String())
			}
		})
	}
}

// Uninstall never removes a file skiff did not write.
func TestUninstallLeavesOthersFiles(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, PodmanDropIn)
	writeFile(t, p, "[engine]\n", 0o644)
	r := mustUninstall(t, Podman, Options{Prefix: root})
	if r.Changed() {
		t.Errorf("uninstall changed %+v", r.Changes)
	}
	if data, _ := os.ReadFile(p); string(data) != "[engine]\n" {
		t.Errorf("file changed to %q", data)
	}
}

func decodeTOML(t *testing.T, p string) map[string]any {
	t.Helper()
	var m map[string]any
	if _, err := toml.DecodeFile(p, &m); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return m
}

func TestFileContents(t *testing.T) {
	root := t.TempDir()
	o := Options{Prefix: root, Binary: "/opt/skiff", StateRoot: "/run/vm"}
	for _, tg := range []Target{Podman, CRIO, Containerd} {
		mustInstall(t, tg, o)
	}
	want := []struct {
		file string
		keys []string
		val  any
	}{
		{PodmanDropIn, []string{"engine", "runtimes", "skiff"}, []any{"/opt/skiff"}},
		{CRIODropIn, []string{"crio", "runtime", "runtimes", "skiff", "runtime_path"}, "/opt/skiff"},
		{CRIODropIn, []string{"crio", "runtime", "runtimes", "skiff", "runtime_type"}, "oci"},
		{CRIODropIn, []string{"crio", "runtime", "runtimes", "skiff", "runtime_root"}, "/run/vm"},
		{CRIODropIn, []string{"crio", "runtime", "drop_infra_ctr"}, false},
		{ContainerdConfig, []string{"version"}, int64(2)},
		{ContainerdConfig, []string{"plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes", "skiff", "runtime_type"}, "io.containerd.runc.v2"},
		{ContainerdConfig, []string{"plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes", "skiff", "options", "BinaryName"}, "/opt/skiff"},
	}
	for _, w := range want {
		v, ok := lookup(decodeTOML(t, filepath.Join(root, w.file)), w.keys)
		if !ok {
			t.Errorf("%s: no %s", w.file, strings.Join(w.keys, "."))
			continue
		}
		if a, isSlice := v.([]any); isSlice {
			if len(a) != 1 || a[0] != w.val.([]any)[0] {
				t.Errorf("%s: %s = %v, want %v", w.file, strings.Join(w.keys, "."), v, w.val)
			}
		} else if v != w.val {
			t.Errorf("%s: %s = %v, want %v", w.file, strings.Join(w.keys, "."), v, w.val)
		}
	}
}

func TestContainerdVersion3(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, ContainerdConfig)
	writeFile(t, p, "version = 3\n", 0o644)
	mustInstall(t, Containerd, Options{Prefix: root})
	v, ok := lookup(decodeTOML(t, p), []string{"plugins", "io.containerd.cri.v1.runtime", "containerd", "runtimes", "skiff", "options", "BinaryName"})
	if !ok || v != DefaultBinary {
		t.Errorf("version 3: BinaryName %v, %v", v, ok)
	}
}

// Files skiff cannot extend safely are refused, and left as they were.
func TestContainerdRefusals(t *testing.T) {
	cases := map[string]string{
		"version 1":      "[plugins.cri]\n",
		"not TOML":       "version = 2\n[plugins\n",
		"skiff there":    "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.skiff]\nruntime_type = \"x\"\n",
		"inline plugins": "version = 2\nplugins = { \"io.containerd.grpc.v1.cri\" = { containerd = { runtimes = {} } } }\n",
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			p := filepath.Join(root, ContainerdConfig)
			writeFile(t, p, content, 0o644)
			before := snapshot(t, root)
			if _, err := Install(Containerd, Options{Prefix: root}); err == nil {
				t.Fatal("install succeeded")
			} else {
				t.Log(err)
			}
			sameFiles(t, "after refused install", snapshot(t, root), before)
		})
	}
}

// The administrator edited config.toml after install: uninstall removes
// only skiff's block, keeps their edit, and leaves the backup.
func TestContainerdEditedSinceInstall(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, ContainerdConfig)
	orig := "version = 2\n"
	writeFile(t, p, orig, 0o644)
	mustInstall(t, Containerd, Options{Prefix: root})
	data, _ := os.ReadFile(p)
	edited := string(data) + "[debug]\n  level = \"debug\"\n"
	writeFile(t, p, edited, 0o644)
	r := mustUninstall(t, Containerd, Options{Prefix: root})
	if r.Changes[0].Action != Updated || r.Changes[0].Backup == "" {
		t.Errorf("uninstall: %+v, want updated with the backup kept", r.Changes)
	}
	got, _ := os.ReadFile(p)
	if want := orig + "[debug]\n  level = \"debug\"\n"; string(got) != want {
		t.Errorf("after uninstall:\n%s\nwant\n%s", got, want)
	}
}

func TestOverheadFromConfig(t *testing.T) {
	dir := t.TempDir()
	cf := filepath.Join(dir, "config.toml")
	writeFile(t, cf, "[hypervisor]\ndefault_memory = 1024\ndefault_vcpus = 2\n", 0o644)
	cfg, err := config.Load(cf)
	if err != nil {
		t.Fatal(err)
	}
	mem, cpu := Overhead(cfg.Hypervisor)
	if mem != 1024+HostOverheadMiB || cpu != 2*MilliCPUPerVCPU {
		t.Errorf("overhead %d MiB, %dm; want %d MiB, %dm", mem, cpu, 1024+HostOverheadMiB, 2*MilliCPUPerVCPU)
	}
	r := mustInstall(t, Kubernetes, Options{Prefix: dir, Config: cfg})
	y, _ := os.ReadFile(r.Changes[0].Path)
	for _, want := range []string{"memory: 1280Mi\n", "cpu: 500m\n", "handler: skiff\n"} {
		if !strings.Contains(string(y), want) {
			t.Errorf("runtime class lacks %q:\n%s", want, y)
		}
	}
}
