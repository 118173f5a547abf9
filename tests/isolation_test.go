package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Isolation: even a container with every capability (podman --privileged)
// reaches its guest, never the host.

// allCaps is every capability the running kernel knows.
func allCaps() []string {
	var caps []string
	last := 40
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			last = n
		}
	}
	names := map[int]string{
		0: "CAP_CHOWN", 1: "CAP_DAC_OVERRIDE", 2: "CAP_DAC_READ_SEARCH", 3: "CAP_FOWNER", 4: "CAP_FSETID",
		5: "CAP_KILL", 6: "CAP_SETGID", 7: "CAP_SETUID", 8: "CAP_SETPCAP", 9: "CAP_LINUX_IMMUTABLE",
		10: "CAP_NET_BIND_SERVICE", 11: "CAP_NET_BROADCAST", 12: "CAP_NET_ADMIN", 13: "CAP_NET_RAW",
		14: "CAP_IPC_LOCK", 15: "CAP_IPC_OWNER", 16: "CAP_SYS_MODULE", 17: "CAP_SYS_RAWIO",
		18: "CAP_SYS_CHROOT", 19: "CAP_SYS_PTRACE", 20: "CAP_SYS_PACCT", 21: "CAP_SYS_ADMIN",
		22: "CAP_SYS_BOOT", 23: "CAP_SYS_NICE", 24: "CAP_SYS_RESOURCE", 25: "CAP_SYS_TIME",
		26: "CAP_SYS_TTY_CONFIG", 27: "CAP_MKNOD", 28: "CAP_LEASE", 29: "CAP_AUDIT_WRITE",
		30: "CAP_AUDIT_CONTROL", 31: "CAP_SETFCAP", 32: "CAP_MAC_OVERRIDE", 33: "CAP_MAC_ADMIN",
		34: "CAP_SYSLOG", 35: "CAP_WAKE_ALARM", 36: "CAP_BLOCK_SUSPEND", 37: "CAP_AUDIT_READ",
		38: "CAP_PERFMON", 39: "CAP_BPF", 40: "CAP_CHECKPOINT_RESTORE",
	}
	for i := 0; i <= last && i <= 40; i++ {
		caps = append(caps, names[i])
	}
	return caps
}

// privileged is what podman --privileged asks for: every capability, no
// masked or read-only /proc paths, and here no PID namespace either, so
// the container sees all of its guest.
func privileged(s *specs.Spec) {
	caps := allCaps()
	s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
	s.Process.NoNewPrivileges = false
	s.Linux.MaskedPaths = nil
	s.Linux.ReadonlyPaths = nil
	withoutNamespace(specs.PIDNamespace)(s)
}

func TestIsolationPrivilegedContainerStaysInItsGuest(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)

	// A host directory the container must never reach, and a symlink to
	// it planted in a directory the container does get.
	secretDir := filepath.Join(e.dir, "secret")
	os.MkdirAll(secretDir, 0o700)
	marker := fmt.Sprintf("host-secret-%d", os.Getpid())
	os.WriteFile(filepath.Join(secretDir, "secret"), []byte(marker), 0o600)
	rw := filepath.Join(e.dir, "rw")
	ro := filepath.Join(e.dir, "ro")
	os.MkdirAll(rw, 0o755)
	os.MkdirAll(ro, 0o755)
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
if grep -qa 'qemu-syste[m]' /proc/[0-9]*/cmdline 2>/dev/null; then echo hostprocs=visible; else echo hostprocs=none; fi
if grep -q %[1]s /mnt/rw/escape/secret 2>/dev/null; then echo symlink=escaped; else echo symlink=contained; fi
if grep -q %[1]s %[2]s/secret 2>/dev/null || grep -q %[1]s /mnt/rw/../../../../..%[2]s/secret 2>/dev/null; then echo dotdot=escaped; else echo dotdot=contained; fi
mount -o remount,rw /mnt/ro 2>/dev/null
if touch /mnt/ro/written 2>/dev/null; then echo rowrite=yes; else echo rowrite=no; fi
if echo %[3]d > %[4]s; then echo sysctl=written; fi
echo guestsysctl=$(cat %[4]s)
`, marker, secretDir, hostVal+7, sysctl)
	b := e.bundle("c", sh(script), privileged, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: "/mnt/rw", Type: "bind", Source: rw, Options: []string{"rbind", "rw"}},
			specs.Mount{Destination: "/mnt/ro", Type: "bind", Source: ro, Options: []string{"rbind", "ro"}})
	})
	r := e.mustOK(e.rt("run", "--bundle", b, e.id("c1")))
	kv := keyValues(r.stdout)
	wantKV(t, kv, "hostprocs", "none")
	wantKV(t, kv, "symlink", "contained")
	wantKV(t, kv, "dotdot", "contained")
	wantKV(t, kv, "rowrite", "no")
	// The write happened, in the guest's kernel...
	wantKV(t, kv, "sysctl", "written")
	wantKV(t, kv, "guestsysctl", strconv.Itoa(hostVal+7))
	// ... and not in the host's.
	after, _ := os.ReadFile(sysctl)
	if string(after) != string(before) {
		t.Errorf("host %s changed from %q to %q", sysctl, before, after)
	}
	if _, err := os.Stat(filepath.Join(ro, "written")); err == nil {
		t.Error("a write reached the host through a read-only mount")
	}
}

// A guest that reboots itself ends its own sandbox, and only that one.
func TestIsolationRebootEndsOnlyItsSandbox(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	other := e.id("other")
	_, out := e.create(other, e.bundle("other", sh("while true; do echo alive; sleep 1; done")))
	e.mustOK(e.rt("start", other))
	e.waitOutput(out, "alive")

	r := e.rt("run", "--bundle", e.bundle("c", sh("reboot -f; sleep 30; echo survived"), privileged), e.id("c1"))
	if r.code == 0 || strings.Contains(r.stdout, "survived") {
		t.Errorf("a guest that rebooted itself still ran its container: %v", r)
	}
	if st := e.state(other); st.Status != "running" {
		t.Errorf("the other sandbox is %q after a neighbour rebooted, want running", st.Status)
	}
	e.mustOK(e.rt("delete", "--force", other))
}

// State is private to root: other users must not reach the sockets that
// control VMs.
func TestStateIsPrivate(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	root := filepath.Join(e.dir, "fresh-root")
	b := e.bundle("c", sh("sleep 30"))
	id := e.id("c1")
	r, _ := e.rtFiles("--root", root, "create", "--bundle", b, id)
	e.mustOK(r)
	defer e.rt("--root", root, "delete", "--force", id)
	for _, p := range []string{root, filepath.Join(root, id)} {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode&0o077 != 0 {
			t.Errorf("%s has mode %o: other users can reach it", p, st.Mode&0o777)
		}
	}
	e.mustOK(e.rt("--root", root, "delete", "--force", id))

	// A state root that others can write to is refused, not trusted.
	open := filepath.Join(e.dir, "open-root")
	os.MkdirAll(open, 0o777)
	os.Chmod(open, 0o777)
	r, _ = e.rtFiles("--root", open, "create", "--bundle", b, id)
	if msg := e.mustFail(r); !strings.Contains(msg, open) {
		t.Errorf("refusal does not name the state root: %q", msg)
	}
}
