package oci

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestParseSignal(t *testing.T) {
	cases := map[string]syscall.Signal{"": syscall.SIGTERM, "TERM": syscall.SIGTERM, "SIGTERM": syscall.SIGTERM,
		"kill": syscall.SIGKILL, "9": syscall.SIGKILL, "SIGUSR1": syscall.SIGUSR1, "hup": syscall.SIGHUP}
	for in, want := range cases {
		got, err := ParseSignal(in)
		if err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"SIGFOO", "0", "-1", "65", "TERM9"} {
		if _, err := ParseSignal(in); err == nil {
			t.Errorf("ParseSignal(%q) accepted an unknown signal", in)
		}
	}
}

func TestParseSpecRefusesBadConfigs(t *testing.T) {
	good, _ := json.Marshal(DefaultSpec())
	if _, err := ParseSpec(good); err != nil {
		t.Fatalf("default spec refused: %v", err)
	}
	bad := map[string]func(*specs.Spec){
		"no root":      func(s *specs.Spec) { s.Root = nil },
		"no process":   func(s *specs.Spec) { s.Process = nil },
		"no args":      func(s *specs.Spec) { s.Process.Args = nil },
		"relative cwd": func(s *specs.Spec) { s.Process.Cwd = "tmp" },
		"relative dst": func(s *specs.Spec) { s.Mounts[0].Destination = "proc" },
		"no version":   func(s *specs.Spec) { s.Version = "" },
		"user namespace": func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
		},
	}
	for name, mutate := range bad {
		s := DefaultSpec()
		mutate(s)
		b, _ := json.Marshal(s)
		if _, err := ParseSpec(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ParseSpec([]byte("{not json")); err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Errorf("malformed JSON: got %v", err)
	}
}

func TestLoadBundleErrors(t *testing.T) {
	if _, err := LoadBundle(filepath.Join(t.TempDir(), "nope")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing bundle: %v", err)
	}
	dir := writeBundle(t)
	os.Remove(filepath.Join(dir, "rootfs"))
	if _, err := LoadBundle(dir); err == nil || !strings.Contains(err.Error(), "root.path") {
		t.Errorf("missing rootfs: %v", err)
	}
}

// writeBundle writes a bundle of the default spec (ocitest imports this
// package, so its tests cannot use ocitest).
func writeBundle(t *testing.T) string {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "rootfs"), 0o755)
	b, _ := json.Marshal(DefaultSpec())
	os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
	return dir
}

func TestPodRole(t *testing.T) {
	for _, c := range []struct {
		ann        map[string]string
		role, sbID string
	}{
		{nil, RoleNone, ""},
		{map[string]string{"io.kubernetes.cri.container-type": "sandbox"}, RoleSandbox, ""},
		{map[string]string{"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": "abc"}, RoleContainer, "abc"},
		{map[string]string{"io.kubernetes.cri-o.ContainerType": "container", "io.kubernetes.cri-o.SandboxID": "def"}, RoleContainer, "def"},
		{map[string]string{"io.kubernetes.cri-o.ContainerType": "sandbox"}, RoleSandbox, ""},
	} {
		s := DefaultSpec()
		s.Annotations = c.ann
		if role, id := PodRole(s); role != c.role || id != c.sbID {
			t.Errorf("%v: %q %q, want %q %q", c.ann, role, id, c.role, c.sbID)
		}
	}
}
