package tests

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// CI scripts make bundles with `runc spec`: its process asks for ambient
// capabilities it gives no inheritable set for, which the kernel refuses
// to raise. runc runs it (with a warning); so must every runtime in its
// place.
func TestRuncSpecBundleRuns(t *testing.T) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Fatalf("runc is not installed (scripts/install-deps.sh installs it): %v", err)
	}
	e := e2e.NewEnv(t)
	dir := e.Mkdir("runc-spec")
	if out, err := exec.Command(runc, "spec", "--bundle", dir).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v\n%s", err, out)
	}
	s := e2e.ReadSpec(t, dir)
	if s.Process.Capabilities == nil || len(s.Process.Capabilities.Ambient) == 0 {
		t.Fatalf("runc spec's process has no ambient capabilities any more: %+v", s.Process.Capabilities)
	}
	// Only what a script changes: the rootfs, the command, no terminal.
	s.Root.Path = e2e.RootfsDir()
	s.Process.Terminal = false
	s.Process.Args = []string{"sh", "-c", "echo ran-as-$(id -u); grep CapEff /proc/self/status"}
	e2e.WriteSpec(t, dir, s)
	r := e.RT("run", "--bundle", dir, e.ID("runcspec"))
	if r.Code != 0 || !strings.Contains(r.Stdout, "ran-as-0") {
		t.Errorf("a bundle from runc spec: %v", r)
	}
}
