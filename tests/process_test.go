package tests

import (
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// The process section of config.json is honoured. One container prints
// everything, one "key=value" per line, to spare VM boots.
func TestProcessConfig(t *testing.T) {
	e := e2e.NewEnv(t)
	b := e.Bundle("c", e2e.Sh(`
echo "foo=$FOO"
echo "cwd=$(pwd)"
echo "uid=$(id -u)"
echo "gid=$(id -g)"
echo "groups=$(id -G)"
echo "hostname=$(hostname)"
echo "nofile-soft=$(ulimit -Sn)"
echo "nofile-hard=$(ulimit -Hn)"
`), func(s *specs.Spec) {
		s.Process.Env = append(s.Process.Env, "FOO=bar baz")
		s.Process.Cwd = "/srv/app"
		s.Process.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{2000}}
		s.Hostname = "e2e-host"
		// Soft below hard, and both unlike any kernel's or host's default,
		// so that only a runtime that applies the rlimit passes.
		s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 512, Hard: 1024}}
	})
	r := e.MustOK(e.RT("run", "--bundle", b, e.ID("c1")))
	kv := e2e.KeyValues(r.Stdout)
	e2e.WantKVs(t, kv, map[string]string{
		"foo": "bar baz", "cwd": "/srv/app", "uid": "1000", "gid": "1000",
		"hostname": "e2e-host", "nofile-soft": "512", "nofile-hard": "1024",
	})
	groups := strings.Fields(kv["groups"])
	if !slices.Contains(groups, "1000") || !slices.Contains(groups, "2000") {
		t.Errorf("id -G = %q, want 1000 and the additional gid 2000", kv["groups"])
	}
	if slices.Contains(groups, "0") {
		t.Errorf("id -G = %q: the process kept root's group", kv["groups"])
	}
}
