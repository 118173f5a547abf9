package hostdisk

import (
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

func allCaps() []string { return protocol.Capabilities() }

func bind(dst, src string) specs.Mount {
	return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: []string{"rbind", "rw", "nosuid"}}
}

// destinations lists a spec's mounts as "dst<-source".
func destinations(s *specs.Spec) []string {
	var out []string
	for _, m := range s.Mounts {
		out = append(out, m.Destination+"<-"+m.Source)
	}
	return out
}

func TestSplitPlainContainerHasNoScratch(t *testing.T) {
	spec := &specs.Spec{Process: &specs.Process{}, Mounts: []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		bind("/var/lib/containers", "/host/vlc"), // not privileged: an ordinary bind
		bind("/cache", "/var/lib/kubelet/pods/u/volumes/kubernetes.io~configmap/c"),
	}}
	rest, p, err := Split(spec, "c1", Rules{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Scratch != nil || len(rest.Mounts) != 3 {
		t.Fatalf("scratch %+v, rest %v: want no scratch and every mount shared", p.Scratch, destinations(rest))
	}
	p.Restore(rest)
	if len(rest.Mounts) != 3 {
		t.Errorf("restore changed a spec without scratch: %v", destinations(rest))
	}
}

func TestSplitRules(t *testing.T) {
	emptyDir := "/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/cache"
	memDir := "/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/mem"
	spec := &specs.Spec{
		Process:     &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: allCaps()}},
		Annotations: map[string]string{AnnotationPaths: " /data , /work/"},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			bind("/var/lib/docker", "/host/docker"), // privileged: replaced
			bind("/var/lib/containers/storage/x", "/host/x"),
			bind("/cache", emptyDir),
			bind("/mem", memDir),
			{Destination: "/work", Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m", "nodev"}},
			bind("/etc/hosts", "/host/hosts"),
		},
	}
	rest, p, err := Split(spec, "c1", Rules{Paths: []string{"/srv/cfg"}, IsTmpfs: func(s string) bool { return s == memDir }})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range rest.Mounts {
		switch m.Destination {
		case "/var/lib/docker", "/cache", "/work":
			t.Errorf("scratch mount %s left for the shared filesystem", m.Destination)
		}
	}
	if len(rest.Mounts) != 4 { // proc, x, mem, hosts
		t.Errorf("shared mounts %v, want proc, /var/lib/containers/storage/x, /mem, /etc/hosts", destinations(rest))
	}
	if len(spec.Mounts) != 7 {
		t.Error("Split changed its argument")
	}

	// The shared filesystem's planning rewrites sources; Restore puts
	// the scratch mounts back around them, in order.
	for i := range rest.Mounts {
		rest.Mounts[i].Source = "guest:" + rest.Mounts[i].Source
	}
	p.Restore(rest)
	var order []string
	bySrc := map[string]specs.Mount{}
	for _, m := range rest.Mounts {
		order = append(order, m.Destination)
		bySrc[m.Destination] = m
	}
	// A path the spec mounts nothing at goes before the first mount below
	// it (which it would hide otherwise), else at the end.
	want := []string{"/proc", "/var/lib/docker", "/var/lib/containers", "/var/lib/containers/storage/x",
		"/cache", "/mem", "/work", "/etc/hosts", "/data", "/srv/cfg", "/var/lib/buildkit"}
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Errorf("mounts in order %v\nwant %v", order, want)
	}
	own := filepath.Join(protocol.ScratchDir, "c", "c1") + "/"
	for _, d := range []string{"/var/lib/docker", "/var/lib/buildkit", "/var/lib/containers", "/data", "/work", "/srv/cfg"} {
		m := bySrc[d]
		if m.Type != "bind" || !strings.HasPrefix(m.Source, own) || m.Options[0] != "rbind" {
			t.Errorf("%s: %+v, want a bind of a directory under %s", d, m, own)
		}
	}
	if m := bySrc["/work"]; strings.Join(m.Options, ",") != "rbind,nodev" {
		t.Errorf("/work options %v: want the tmpfs's meaningful options only", m.Options)
	}
	if m := bySrc["/cache"]; !strings.HasPrefix(m.Source, protocol.ScratchDir+"/v/") || strings.Contains(m.Source, "cache") {
		t.Errorf("emptyDir /cache: %+v, want a pod volume directory named by a hash", m)
	}
	if m := bySrc["/mem"]; m.Source != "guest:"+memDir {
		t.Errorf("a memory-backed emptyDir went to scratch: %+v", m)
	}
	if p.Scratch == nil || p.Scratch.Serial != protocol.ScratchSerial || len(p.Scratch.Dirs) != 7 {
		t.Fatalf("agent's part %+v: want the disk's serial and 7 directories", p.Scratch)
	}
	for _, d := range p.Scratch.Dirs {
		if filepath.Clean(d) != d || !strings.HasPrefix(d, protocol.ScratchDir+"/") {
			t.Errorf("directory %q is not clean under %s", d, protocol.ScratchDir)
		}
	}
}

// Each container's own directories are its own; a pod's emptyDir is the
// same directory for every container that mounts it.
func TestSplitSeparatesContainers(t *testing.T) {
	emptyDir := "/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/shared"
	spec := &specs.Spec{Process: &specs.Process{}, Annotations: map[string]string{AnnotationPaths: "/data"},
		Mounts: []specs.Mount{bind("/shared", emptyDir)}}
	_, a, _ := Split(spec, "a", Rules{})
	_, b, _ := Split(spec, "b", Rules{})
	if a.Scratch.Dirs[0] == b.Scratch.Dirs[0] && a.Scratch.Dirs[1] == b.Scratch.Dirs[1] {
		t.Fatalf("a %v and b %v", a.Scratch.Dirs, b.Scratch.Dirs)
	}
	shared := 0
	for _, da := range a.Scratch.Dirs {
		for _, db := range b.Scratch.Dirs {
			if da == db {
				shared++
			}
		}
	}
	if shared != 1 {
		t.Errorf("a %v, b %v: want exactly the emptyDir in common", a.Scratch.Dirs, b.Scratch.Dirs)
	}
}

func TestSplitRefusesBadAnnotation(t *testing.T) {
	for _, v := range []string{"relative", "/", "/ok,../x"} {
		spec := &specs.Spec{Annotations: map[string]string{AnnotationPaths: v}}
		if _, _, err := Split(spec, "c", Rules{}); err == nil {
			t.Errorf("annotation %q accepted", v)
		}
	}
}

// Privileged means every capability; one missing is not.
func TestPrivilegedNeedsEveryCapability(t *testing.T) {
	caps := allCaps()
	if !protocol.Privileged(&specs.LinuxCapabilities{Bounding: caps}) {
		t.Error("every capability is not privileged")
	}
	if protocol.Privileged(&specs.LinuxCapabilities{Bounding: caps[1:]}) || protocol.Privileged(nil) {
		t.Error("a missing capability is privileged")
	}
}
