package state

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-oci/skiff/internal/proc"
	"github.com/skiff-oci/skiff/sandbox/oci"
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

func TestRootClaimAndAtomicRecords(t *testing.T) {
	root := Root(filepath.Join(t.TempDir(), "root"))
	d, l, err := root.Claim("c1")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	if _, _, err := root.Claim("c1"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("duplicate create: %v", err)
	}
	if _, _, err := root.Claim("../x"); err == nil {
		t.Error("a bad ID was claimed")
	}
	if err := d.Write(&Container{ID: "c1", Sandbox: "c1", Phase: PhaseCreated}); err != nil {
		t.Fatal(err)
	}
	sd := root.Sandbox("c1")
	if err := sd.Write(&Sandbox{ID: "c1", Containers: []string{"c1"}, ShimPID: 1 << 22}); err != nil {
		t.Fatal(err)
	}
	c, err := d.Read()
	if err != nil || c.Phase != PhaseCreated || c.Sandbox != "c1" {
		t.Fatalf("read back: %+v %v", c, err)
	}
	sb, err := sd.Read()
	if err != nil || sb.ShimPID != 1<<22 {
		t.Fatalf("read back sandbox: %+v %v", sb, err)
	}
	ents, _ := os.ReadDir(string(d))
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temp file left: %s", e.Name())
		}
	}
	fi, _ := os.Stat(string(root))
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("state root mode %v, want 0700", fi.Mode().Perm())
	}
	// A dead shim means stopped, whatever the record says.
	c.Phase, c.PID = PhaseStarted, 1<<22
	if got := Status(d, c); got != oci.StatusStopped {
		t.Errorf("status with dead shim = %s", got)
	}
	if _, err := root.Container("nope").Read(); err != ErrNotExist {
		t.Errorf("a missing container: %v", err)
	}
}

// A verb that waited for the lock of a container deleted and created
// again meanwhile must not act on the new one.
func TestLockRefusesARecreatedDirectory(t *testing.T) {
	root := Root(t.TempDir())
	d, l, err := root.Claim("c1")
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(string(d))
	defer f.Close()
	os.Remove(string(d))
	os.Mkdir(string(d), 0o700)
	if sameFile(f, string(d)) {
		t.Error("a new directory at the same path taken for the old one")
	}
	l.Unlock()
}

func TestGuards(t *testing.T) {
	if CanStart("x", oci.StatusRunning) == nil || CanStart("x", oci.StatusCreated) != nil {
		t.Error("canStart")
	}
	if CanKill("x", oci.StatusStopped) == nil || CanKill("x", oci.StatusRunning) != nil {
		t.Error("canKill")
	}
	if CanDelete("x", oci.StatusRunning, false) == nil || CanDelete("x", oci.StatusRunning, true) != nil || CanDelete("x", oci.StatusStopped, false) != nil {
		t.Error("canDelete")
	}
}

func TestProcessGuards(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		ok   bool
	}{
		{"exec running", CanExec("x", oci.StatusRunning), true},
		{"exec created", CanExec("x", oci.StatusCreated), true},
		{"exec stopped", CanExec("x", oci.StatusStopped), false},
		{"exec paused", CanExec("x", oci.StatusPaused), false},
		{"pause running", CanPause("x", oci.StatusRunning), true},
		{"pause stopped", CanPause("x", oci.StatusStopped), false},
		{"pause paused", CanPause("x", oci.StatusPaused), false},
		{"resume paused", CanResume("x", oci.StatusPaused), true},
		{"resume running", CanResume("x", oci.StatusRunning), false},
		{"kill paused", CanKill("x", oci.StatusPaused), true},
		{"delete paused", CanDelete("x", oci.StatusPaused, false), false},
	} {
		if (c.err == nil) != c.ok {
			t.Errorf("%s: %v, want ok=%v", c.name, c.err, c.ok)
		}
	}
}

// A container whose process exited is stopped while its shim, still
// alive, stops the VM: delete must not have to wait for the teardown.
func TestStatusExitedWhileShimTearsDown(t *testing.T) {
	root := Root(t.TempDir())
	d, l, err := root.Claim("c1")
	if err != nil {
		t.Fatal(err)
	}
	l.Unlock()
	start, err := proc.StartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// This test process stands for the shim: alive.
	c := &Container{ID: "c1", Phase: PhaseStarted, PID: os.Getpid(), PIDStart: start}
	os.WriteFile(d.StartedMarker(), nil, 0o600)
	if got := Status(d, c); got != oci.StatusRunning {
		t.Fatalf("started, shim alive: %s, want running", got)
	}
	os.WriteFile(d.ExitedMarker(), nil, 0o600)
	if got := Status(d, c); got != oci.StatusStopped {
		t.Errorf("exited, shim still tearing down: %s, want stopped", got)
	}
}
