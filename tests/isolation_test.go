package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// Isolation: the container runs on a kernel of its own, and even a
// container with every capability (podman --privileged) reaches its guest,
// never the host.

// One privileged container probes everything at once, to spare VM boots;
// each property is its own subtest.
func TestIsolationPrivilegedContainerStaysInItsGuest(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)

	// A host directory the container must never reach, and a symlink to
	// it planted in a directory the container does get.
	marker := fmt.Sprintf("host-secret-%d", os.Getpid())
	secretDir := filepath.Dir(e.WriteFile("secret/secret", marker))
	os.Chmod(secretDir, 0o700)
	rw, ro := e.Mkdir("rw"), e.Mkdir("ro")
	if err := os.Symlink(secretDir, filepath.Join(rw, "escape")); err != nil {
		t.Fatal(err)
	}

	const sysctl = "/proc/sys/vm/overcommit_ratio"
	before, err := os.ReadFile(sysctl)
	if err != nil {
		t.Fatal(err)
	}
	hostVal, _ := strconv.Atoi(strings.TrimSpace(string(before)))

	script := fmt.Sprintf(`
echo "release=$(uname -r)"; echo "version=$(cat /proc/version)"
if grep -qa 'qemu-syste[m]' /proc/[0-9]*/cmdline 2>/dev/null; then echo hostprocs=visible; else echo hostprocs=none; fi
if grep -q %[1]s /mnt/rw/escape/secret 2>/dev/null; then echo symlink=escaped; else echo symlink=contained; fi
if grep -q %[1]s %[2]s/secret 2>/dev/null || grep -q %[1]s /mnt/rw/../../../../..%[2]s/secret 2>/dev/null; then echo dotdot=escaped; else echo dotdot=contained; fi
mount -o remount,rw /mnt/ro 2>/dev/null
if touch /mnt/ro/written 2>/dev/null; then echo rowrite=yes; else echo rowrite=no; fi
if echo %[3]d > %[4]s; then echo sysctl=written; fi
echo guestsysctl=$(cat %[4]s)
`, marker, secretDir, hostVal+7, sysctl)
	b := e.Bundle("c", e2e.Sh(script), e2e.Privileged, e2e.Mounts(
		e2e.Bind("/mnt/rw", rw, "rbind", "rw"),
		e2e.Bind("/mnt/ro", ro, "rbind", "ro")))
	r := e.MustOK(e.RT("run", "--bundle", b, e.ID("c1")))
	kv := e2e.KeyValues(r.Stdout)

	// The container runs on its own guest kernel, not the host's.
	t.Run("guest kernel", func(t *testing.T) {
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
	})
	t.Run("host processes unseen", func(t *testing.T) {
		e2e.WantKV(t, kv, "hostprocs", "none")
	})
	t.Run("bind mounts confine", func(t *testing.T) {
		e2e.WantKV(t, kv, "symlink", "contained")
		e2e.WantKV(t, kv, "dotdot", "contained")
		e2e.WantKV(t, kv, "rowrite", "no")
		if _, err := os.Stat(filepath.Join(ro, "written")); err == nil {
			t.Error("a write reached the host through a read-only mount")
		}
	})
	t.Run("sysctl stays in the guest", func(t *testing.T) {
		// The write happened, in the guest's kernel...
		e2e.WantKV(t, kv, "sysctl", "written")
		e2e.WantKV(t, kv, "guestsysctl", strconv.Itoa(hostVal+7))
		// ... and not in the host's.
		after, _ := os.ReadFile(sysctl)
		if string(after) != string(before) {
			t.Errorf("host %s changed from %q to %q", sysctl, before, after)
		}
	})
}

// A guest that reboots itself ends its own sandbox, and only that one.
func TestIsolationRebootEndsOnlyItsSandbox(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	other := e.ID("other")
	e.CreateStarted(other, e.Bundle("other", e2e.Sh("while true; do echo alive; sleep 1; done")), "alive")

	r := e.RT("run", "--bundle", e.Bundle("c", e2e.Sh("reboot -f; sleep 30; echo survived"), e2e.Privileged), e.ID("c1"))
	if r.Code == 0 || strings.Contains(r.Stdout, "survived") {
		t.Errorf("a guest that rebooted itself still ran its container: %v", r)
	}
	if st := e.State(other); st.Status != "running" {
		t.Errorf("the other sandbox is %q after a neighbour rebooted, want running", st.Status)
	}
	e.MustOK(e.RT("delete", "--force", other))
}
