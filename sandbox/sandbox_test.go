package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/hypervisor"
)

func TestValidateID(t *testing.T) {
	for _, id := range []string{"a", "abc-1.2_3+x", "A0", strings.Repeat("f", 64)} {
		if err := ValidateID(id); err != nil {
			t.Errorf("ValidateID(%q) = %v, want ok", id, err)
		}
	}
	for _, id := range []string{"", "a/b", "..", "../x", ".hidden", "-x", "a b", "a\x00b", strings.Repeat("f", 65)} {
		if err := ValidateID(id); err == nil {
			t.Errorf("ValidateID(%q) accepted a bad ID", id)
		}
	}
}

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

func writeBundle(t *testing.T, mutate func(*specs.Spec)) string {
	t.Helper()
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "rootfs"), 0o755)
	s := DefaultSpec()
	if mutate != nil {
		mutate(s)
	}
	b, _ := json.Marshal(s)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPlanSharesRewritesHostPaths(t *testing.T) {
	hostDir := t.TempDir()
	hostFile := filepath.Join(t.TempDir(), "hosts")
	os.WriteFile(hostFile, []byte("x"), 0o644)
	dir := writeBundle(t, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: "/data", Type: "bind", Source: hostDir, Options: []string{"rbind", "ro"}},
			specs.Mount{Destination: "/etc/hosts", Source: hostFile, Options: []string{"bind"}},
			specs.Mount{Destination: "/dev/null2", Source: "/dev/null", Options: []string{"bind"}})
		s.Hooks = &specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/true"}}}
	})
	b, err := LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	state := Dir(t.TempDir())
	p, err := planShares(state, b)
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.Root.Path != "/run/skiff/shares/rootfs" || p.Host[0].HostPath != b.Rootfs || !p.Host[0].ReadOnly {
		t.Errorf("rootfs share wrong: %+v %+v", p.Spec.Root, p.Host[0])
	}
	n := len(b.Spec.Mounts)
	data, file, dev := p.Spec.Mounts[n-3], p.Spec.Mounts[n-2], p.Spec.Mounts[n-1]
	// A directory reaches the guest through its own host bind mount
	// under dirs/, read-only there when the mount is.
	if data.Source != "/run/skiff/shares/m0/0" || p.Host[1].HostPath != state.DirsDir() || p.Host[1].Tag != "m0" {
		t.Errorf("dir bind not shared through dirs/: %+v %+v", data, p.Host[1])
	}
	wantBind := hostBind{source: hostDir, target: filepath.Join(state.DirsDir(), "0"), dir: true, readOnly: true}
	if len(p.binds) != 2 || p.binds[0] != wantBind {
		t.Errorf("host binds %+v, want first %+v", p.binds, wantBind)
	}
	// A file is shared through a directory of its own, never its parent.
	if p.Host[2].HostPath != state.FilesDir() || p.Host[2].Tag != "m1" || p.binds[1].source != hostFile || p.binds[1].dir {
		t.Errorf("file bind shares %s (binds %+v)", p.Host[2].HostPath, p.binds)
	}
	if file.Source != "/run/skiff/shares/m1/0/hosts" {
		t.Errorf("file bind guest source %s", file.Source)
	}
	if dev.Source != "/dev/null" {
		t.Errorf("device bind rewritten to %s", dev.Source)
	}
	if p.Spec.Hooks != nil {
		t.Error("hooks must not reach the guest")
	}
	if b.Spec.Mounts[n-3].Source != hostDir {
		t.Error("planShares changed the bundle's spec")
	}
}

// However many directories and files a container binds, its shares are
// the rootfs and at most two more, with the tags a VM template carries.
func TestPlanSharesFitATemplateWhateverTheMounts(t *testing.T) {
	dir := writeBundle(t, func(s *specs.Spec) {
		for i := 0; i < 12; i++ {
			src := t.TempDir()
			if i%2 == 1 {
				src = filepath.Join(src, "f")
				os.WriteFile(src, nil, 0o644)
			}
			s.Mounts = append(s.Mounts, specs.Mount{Destination: fmt.Sprintf("/v%d", i), Type: "bind", Source: src, Options: []string{"rbind"}})
		}
	})
	b, err := LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := planShares(Dir(t.TempDir()), b)
	if err != nil {
		t.Fatal(err)
	}
	c := hypervisor.Config{Shares: p.Host}
	for _, machine := range []string{"q35", "microvm"} {
		c.Machine = machine
		if !templateEligible(c) {
			t.Errorf("12 bind mounts on %s: shares %+v do not fit a template", machine, p.Host)
		}
	}
	if len(p.Host) != 3 || len(p.binds) != 12 {
		t.Errorf("%d shares and %d host binds, want 3 and 12", len(p.Host), len(p.binds))
	}
}

func TestLoadBundleErrors(t *testing.T) {
	if _, err := LoadBundle(filepath.Join(t.TempDir(), "nope")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing bundle: %v", err)
	}
	dir := writeBundle(t, nil)
	os.Remove(filepath.Join(dir, "rootfs"))
	if _, err := LoadBundle(dir); err == nil || !strings.Contains(err.Error(), "root.path") {
		t.Errorf("missing rootfs: %v", err)
	}
	dir = writeBundle(t, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "bind", Source: "/nonexistent/dir"})
	})
	b, err := LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := planShares(Dir(t.TempDir()), b); err == nil || !strings.Contains(err.Error(), "/nonexistent/dir") {
		t.Errorf("missing mount source: %v", err)
	}
}

func TestStoreWriteIsAtomicAndCreateClaimsID(t *testing.T) {
	s := &Store{Root: filepath.Join(t.TempDir(), "root")}
	d, l, err := s.create("c1")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	if _, _, err := s.create("c1"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("duplicate create: %v", err)
	}
	if err := d.write(&State{ID: "c1", Phase: PhaseCreated}); err != nil {
		t.Fatal(err)
	}
	st, err := d.read()
	if err != nil || st.Phase != PhaseCreated {
		t.Fatalf("read back: %+v %v", st, err)
	}
	ents, _ := os.ReadDir(string(d))
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temp file left: %s", e.Name())
		}
	}
	fi, _ := os.Stat(s.Root)
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("state root mode %v, want 0700", fi.Mode().Perm())
	}
	// A dead shim means stopped, whatever the file says.
	if got := d.status(&State{ID: "c1", Phase: PhaseStarted, ShimPID: 1 << 22}); got != StatusStopped {
		t.Errorf("status with dead shim = %s", got)
	}
}

func TestGuards(t *testing.T) {
	if canStart("x", StatusRunning) == nil || canStart("x", StatusCreated) != nil {
		t.Error("canStart")
	}
	if canKill("x", StatusStopped) == nil || canKill("x", StatusRunning) != nil {
		t.Error("canKill")
	}
	if canDelete("x", StatusRunning, false) == nil || canDelete("x", StatusRunning, true) != nil || canDelete("x", StatusStopped, false) != nil {
		t.Error("canDelete")
	}
}

func TestUnescapeMountPath(t *testing.T) {
	if got := unescapeMountPath(`/a\040b/c`); got != "/a b/c" {
		t.Errorf("got %q", got)
	}
}
