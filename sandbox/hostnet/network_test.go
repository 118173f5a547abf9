package hostnet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/skiff-oci/skiff/sandbox/oci"
)

func specWithNetNS(path string) *specs.Spec {
	s := oci.DefaultSpec()
	for i, n := range s.Linux.Namespaces {
		if n.Type == specs.NetworkNamespace {
			s.Linux.Namespaces[i].Path = path
		}
	}
	return s
}

func TestCheckNetwork(t *testing.T) {
	if err := Check(oci.DefaultSpec(), NetworkTCFilter); err != nil {
		t.Errorf("a new, empty namespace: %v", err)
	}
	missing := specWithNetNS("/nonexistent/netns")
	if err := Check(missing, NetworkTCFilter); err == nil || !strings.Contains(err.Error(), "/nonexistent/netns") {
		t.Errorf("missing namespace: error %v, want one naming it", err)
	}
	if err := Check(missing, NetworkNone); err != nil {
		t.Errorf("network_model none ignores the namespace, got %v", err)
	}
	own := specWithNetNS("/proc/self/ns/net")
	if err := Check(own, NetworkTCFilter); err == nil || !strings.Contains(err.Error(), "host's own") {
		t.Errorf("the host's namespace: error %v, want a refusal", err)
	}
}

func TestSetupNetworkNothingToDo(t *testing.T) {
	d := t.TempDir()
	for name, c := range map[string]struct {
		spec  *specs.Spec
		model string
	}{
		"no path":    {oci.DefaultSpec(), NetworkTCFilter},
		"model none": {specWithNetNS("/proc/self/ns/net"), NetworkNone},
	} {
		n, err := Setup(d, c.spec, c.model, nil)
		if err != nil || n != nil {
			t.Errorf("%s: got %v, %v; want loopback only", name, n, err)
		}
		if n.Devices() != nil {
			t.Errorf("%s: devices for a nil network", name)
		}
		n.CloseTaps()
	}
	if _, err := os.Stat(netRecordPath(d)); !os.IsNotExist(err) {
		t.Errorf("a network record was written with nothing to undo")
	}
}

func TestRemoveNetworkWithoutNamespace(t *testing.T) {
	d := t.TempDir()
	if err := Remove(d); err != nil {
		t.Errorf("no record: %v", err)
	}
	// The namespace's owner deleted it first: nothing is left to undo.
	if err := writeNetRecord(d, &netRecord{NetNS: filepath.Join(string(d), "gone"), Taps: []string{"tap0_skiff"}, Links: []string{"eth0"}}); err != nil {
		t.Fatal(err)
	}
	if err := Remove(d); err != nil {
		t.Errorf("namespace gone: %v", err)
	}
	if _, err := os.Stat(netRecordPath(d)); !os.IsNotExist(err) {
		t.Errorf("record kept after teardown")
	}
}

func TestTapPattern(t *testing.T) {
	for name, want := range map[string]bool{
		"tap0_skiff": true, "tap12_skiff": true, "tap_skiff": false, "tap0_skiffx": false, "eth0": false, "xtap0_skiff": false,
	} {
		if tapPattern.MatchString(name) != want {
			t.Errorf("tapPattern(%q) = %v, want %v", name, !want, want)
		}
	}
}
