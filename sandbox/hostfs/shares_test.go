package hostfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/skiff-oci/skiff/internal/ocitest"
	"github.com/skiff-oci/skiff/sandbox/oci"
)

func TestPlanSharesRewritesHostPaths(t *testing.T) {
	hostDir := t.TempDir()
	hostFile := filepath.Join(t.TempDir(), "hosts")
	os.WriteFile(hostFile, []byte("x"), 0o644)
	dir := ocitest.Bundle(t, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: "/data", Type: "bind", Source: hostDir, Options: []string{"rbind", "ro"}},
			specs.Mount{Destination: "/etc/hosts", Source: hostFile, Options: []string{"bind"}},
			specs.Mount{Destination: "/dev/null2", Source: "/dev/null", Options: []string{"bind"}})
		s.Hooks = &specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/true"}}}
	})
	b, err := oci.LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	sandbox := t.TempDir()
	p, err := PlanShares(sandbox, b, false)
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
	if data.Source != "/run/skiff/shares/m0/0/"+filepath.Base(hostDir) || p.Host[1].HostPath != dirsDir(sandbox) || p.Host[1].Tag != "m0" {
		t.Errorf("dir bind not shared through dirs/: %+v %+v", data, p.Host[1])
	}
	wantBind := hostBind{source: hostDir, target: filepath.Join(dirsDir(sandbox), "0", filepath.Base(hostDir)), dir: true, readOnly: true}
	if len(p.binds) != 2 || p.binds[0] != wantBind {
		t.Errorf("host binds %+v, want first %+v", p.binds, wantBind)
	}
	// A file is shared through a directory of its own, never its parent.
	if p.Host[2].HostPath != filesDir(sandbox) || p.Host[2].Tag != "m1" || p.binds[1].source != hostFile || p.binds[1].dir {
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
		t.Error("PlanShares changed the bundle's spec")
	}
}

// However many directories and files a container binds, its shares are
// the rootfs and at most two more, with the tags a VM template carries.
func TestPlanSharesFitATemplateWhateverTheMounts(t *testing.T) {
	dir := ocitest.Bundle(t, func(s *specs.Spec) {
		for i := 0; i < 12; i++ {
			src := t.TempDir()
			if i%2 == 1 {
				src = filepath.Join(src, "f")
				os.WriteFile(src, nil, 0o644)
			}
			s.Mounts = append(s.Mounts, specs.Mount{Destination: fmt.Sprintf("/v%d", i), Type: "bind", Source: src, Options: []string{"rbind"}})
		}
	})
	b, err := oci.LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := PlanShares(t.TempDir(), b, false)
	if err != nil {
		t.Fatal(err)
	}
	for i, tag := range []string{"rootfs", "m0", "m1"} {
		if i >= len(p.Host) || p.Host[i].Tag != tag {
			t.Errorf("share tags %+v, want rootfs, m0, m1 (a template's slots)", p.Host)
			break
		}
	}
	if len(p.Host) != 3 || len(p.binds) != 12 {
		t.Errorf("%d shares and %d host binds, want 3 and 12", len(p.Host), len(p.binds))
	}
}

func TestPlanSharesRefusesAMissingSource(t *testing.T) {
	dir := ocitest.Bundle(t, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "bind", Source: "/nonexistent/dir"})
	})
	b, err := oci.LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PlanShares(t.TempDir(), b, false); err == nil || !strings.Contains(err.Error(), "/nonexistent/dir") {
		t.Errorf("missing mount source: %v", err)
	}
}
