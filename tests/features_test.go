package tests

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// features prints the OCI features document, and it is honest: the hooks
// skiff runs, the mount options it honours, no seccomp claimed.
func TestFeatures(t *testing.T) {
	e := e2e.NewEnv(t)
	r := e.MustOK(e.RT("features"))
	var f features.Features
	if err := json.Unmarshal([]byte(r.Stdout), &f); err != nil {
		t.Fatalf("features printed invalid JSON: %v\n%s", err, r.Stdout)
	}
	if f.OCIVersionMin == "" || f.OCIVersionMax == "" {
		t.Errorf("features: want ociVersionMin and ociVersionMax, got %q and %q", f.OCIVersionMin, f.OCIVersionMax)
	}
	for _, h := range []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"} {
		if !slices.Contains(f.Hooks, h) {
			t.Errorf("features: hooks %v lack %s", f.Hooks, h)
		}
	}
	for _, o := range []string{"ro", "nosuid", "rbind", "rprivate", "tmpcopyup"} {
		if !slices.Contains(f.MountOptions, o) {
			t.Errorf("features: mountOptions %v lack %s", f.MountOptions, o)
		}
	}
	if f.Linux == nil || f.Linux.Cgroup == nil || f.Linux.Cgroup.V2 == nil || !*f.Linux.Cgroup.V2 {
		t.Errorf("features: want linux.cgroup.v2 true, got %+v", f.Linux)
	} else {
		if f.Linux.Seccomp != nil {
			t.Errorf("features: seccomp is not applied, yet the document describes it: %+v", f.Linux.Seccomp)
		}
		if !slices.Contains(f.Linux.Namespaces, "pid") || !slices.Contains(f.Linux.Capabilities, "CAP_SYS_ADMIN") {
			t.Errorf("features: namespaces %v / capabilities %v incomplete", f.Linux.Namespaces, f.Linux.Capabilities)
		}
	}
	if e2e.IsSkiff() && f.Annotations["io.github.skiff.vm"] != "qemu" {
		t.Errorf("features: annotations %v lack io.github.skiff.vm=qemu", f.Annotations)
	}
	e.MustFail(e.RT("features", "extra"))
}
