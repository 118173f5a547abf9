package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Bundle writes a bundle in a new directory: config.json comes from the
// runtime's own `spec` verb, then gets args, the shared rootfs (read-only)
// and no terminal; edit changes whatever else the test needs.
func (e *Env) Bundle(name string, args []string, edit ...func(*specs.Spec)) string {
	e.T.Helper()
	dir := e.Mkdir("b-" + name)
	e.MustOK(e.RT("spec", "--bundle", dir))
	s := ReadSpec(e.T, dir)
	s.Root = &specs.Root{Path: rootfsDir, Readonly: true}
	s.Process.Terminal = false
	s.Process.Args = args
	for _, f := range edit {
		f(s)
	}
	WriteSpec(e.T, dir, s)
	return dir
}

// ReadSpec reads the config.json of the bundle dir.
func ReadSpec(t *testing.T, dir string) *specs.Spec {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatalf("`spec` wrote no config.json: %v", err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatalf("`spec` wrote an unreadable config.json: %v", err)
	}
	if s.Version == "" || s.Process == nil || s.Root == nil {
		t.Fatalf("`spec` wrote a config.json without ociVersion, process or root:\n%s", data)
	}
	return &s
}

// WriteSpec writes s as the config.json of the bundle dir.
func WriteSpec(t *testing.T, dir string, s *specs.Spec) {
	t.Helper()
	data, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Sh is the argv of a busybox shell script.
func Sh(script string) []string { return []string{"/bin/sh", "-c", script} }

// Mounts adds mounts to the spec.
func Mounts(m ...specs.Mount) func(*specs.Spec) {
	return func(s *specs.Spec) { s.Mounts = append(s.Mounts, m...) }
}

// Bind is a bind mount of the host path src at dest, with options (ro or
// rw, rbind or bind, propagation).
func Bind(dest, src string, options ...string) specs.Mount {
	return specs.Mount{Destination: dest, Type: "bind", Source: src, Options: options}
}

// WithoutNamespace removes a namespace from the spec.
func WithoutNamespace(ns specs.LinuxNamespaceType) func(*specs.Spec) {
	return func(s *specs.Spec) {
		var kept []specs.LinuxNamespace
		for _, n := range s.Linux.Namespaces {
			if n.Type != ns {
				kept = append(kept, n)
			}
		}
		s.Linux.Namespaces = kept
	}
}

// Privileged is what podman --privileged asks for: every capability, no
// masked or read-only /proc paths, and here no PID namespace either, so
// the container sees all of its guest. A runtime on the host's kernel
// (runc) gets what podman would give it: the host's bounding set.
func Privileged(s *specs.Spec) {
	caps := allCaps()
	if !IsSkiff() {
		caps = HostBounded(caps)
	}
	s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
	s.Process.NoNewPrivileges = false
	s.Linux.MaskedPaths = nil
	s.Linux.ReadonlyPaths = nil
	WithoutNamespace(specs.PIDNamespace)(s)
}

// capNames are the capabilities by number.
var capNames = map[int]string{
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

// allCaps is every capability the running kernel knows.
func allCaps() []string {
	var caps []string
	last := 40
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			last = n
		}
	}
	for i := 0; i <= last && i <= 40; i++ {
		caps = append(caps, capNames[i])
	}
	return caps
}

// HostBounded keeps of caps those in this process's bounding set: what a
// runtime on the host's kernel (runc) can give on this machine.
func HostBounded(caps []string) []string {
	b, _ := os.ReadFile("/proc/self/status")
	var mask uint64
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			mask, _ = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	var kept []string
	for n, name := range capNames {
		if mask&(1<<uint(n)) != 0 && slices.Contains(caps, name) {
			kept = append(kept, name)
		}
	}
	return kept
}
