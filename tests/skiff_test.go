package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// skiffOnly skips checks that hold only for a VM runtime.
func skiffOnly(t *testing.T) {
	t.Helper()
	if !isSkiff {
		t.Skipf("skiff-specific; the runtime under test is %s", runtimeBin)
	}
}

// The container runs on its own guest kernel, not the host's.
func TestGuestKernel(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	b := e.bundle("c", sh(`echo "release=$(uname -r)"; echo "version=$(cat /proc/version)"`))
	kv := keyValues(e.mustOK(e.rt("run", "--bundle", b, e.id("k"))).stdout)

	hostRelease, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	hostVersion, err := os.ReadFile("/proc/version")
	if err != nil {
		t.Fatal(err)
	}
	if kv["release"] == "" || kv["version"] == "" {
		t.Fatalf("the container printed no kernel release or version: %v", kv)
	}
	if kv["release"] == strings.TrimSpace(string(hostRelease)) {
		t.Errorf("uname -r in the container is the host's (%s): not a guest kernel", kv["release"])
	}
	if kv["version"] == strings.TrimSpace(string(hostVersion)) {
		t.Errorf("/proc/version in the container is the host's: %s", kv["version"])
	}
}

// A broken --config is refused with a message before any VM starts.
func TestBadConfig(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	b := e.bundle("c", []string{"true"})
	cases := []struct {
		name, toml, mention string
	}{
		{"malformed", "accel = [\n", ""},
		{"missing kernel", "[hypervisor]\nkernel = \"/nonexistent/vmlinux\"\n", "/nonexistent/vmlinux"},
	}
	for i, c := range cases {
		cfg := filepath.Join(e.dir, c.name+".toml")
		if err := os.WriteFile(cfg, []byte(c.toml), 0o644); err != nil {
			t.Fatal(err)
		}
		id := e.id("cfg") + "-" + string(rune('a'+i))
		r, _ := e.rtFiles("--config", cfg, "run", "--bundle", b, id)
		msg := e.mustFail(r)
		if !strings.Contains(msg, c.mention) {
			t.Errorf("%s config: message %q does not name %s", c.name, msg, c.mention)
		}
		if c.mention == "" && !strings.Contains(msg, cfg) && !strings.Contains(msg, "toml") && !strings.Contains(msg, "config") {
			t.Errorf("%s config: message %q does not say the configuration is at fault", c.name, msg)
		}
		e.assertNothingFor(id)
	}
}
