// Package layout holds the test that keeps the import arrows of skiff's
// packages pointing one way: commands → sandbox → (state, shimctl, oci) →
// factory → host plumbing → hypervisor, agentclient. Host code never
// imports guest code.
package layout

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/skiff-oci/skiff/"

// forbidden lists, for each package (a prefix), the skiff packages it must
// not depend on, directly or not: a package and those below it, or one
// package alone when written "=name" (agentclient's client, not the
// protocol that host and guest share).
var forbidden = map[string][]string{
	// Host code never imports the guest's.
	"commands":    {"agent"},
	"sandbox":     {"agent", "sandbox/shim"},
	"hypervisor":  {"agent", "sandbox", "commands", "=agentclient"},
	"agentclient": {"agent", "sandbox", "hypervisor", "commands"},
	"hostcheck":   {"agent"},
	"installer":   {"agent"},
	// The guest never imports the host's.
	"agent": {"sandbox", "hypervisor", "commands", "=agentclient"},
	// The verbs, the shim and the factory, one way.
	"sandbox/state":   {"sandbox/shim", "sandbox/factory", "sandbox/hostnet", "sandbox/hostfs", "sandbox/hostcgroup", "hypervisor", "=agentclient"},
	"sandbox/shimctl": {"sandbox/shim", "sandbox/factory", "sandbox/hostnet", "sandbox/hostfs", "sandbox/hostcgroup", "sandbox/state", "hypervisor"},
	"sandbox/oci":     {"sandbox/shim", "sandbox/factory", "sandbox/hostnet", "sandbox/hostfs", "sandbox/hostcgroup", "sandbox/state", "sandbox/shimctl", "hypervisor"},
	"sandbox/factory": {"sandbox/shim", "sandbox/state", "sandbox/shimctl", "commands"},
	// Host plumbing: siblings that never import each other, nor anything
	// above them.
	"sandbox/hostnet":    {"sandbox/hostfs", "sandbox/hostdisk", "sandbox/hostcgroup", "sandbox/factory", "sandbox/shim", "sandbox/state", "sandbox/shimctl", "=agentclient"},
	"sandbox/hostfs":     {"sandbox/hostnet", "sandbox/hostdisk", "sandbox/hostcgroup", "sandbox/factory", "sandbox/shim", "sandbox/state", "sandbox/shimctl"},
	"sandbox/hostdisk":   {"sandbox/hostnet", "sandbox/hostfs", "sandbox/hostcgroup", "sandbox/factory", "sandbox/shim", "sandbox/state", "sandbox/shimctl", "=agentclient"},
	"sandbox/hostcgroup": {"sandbox/hostnet", "sandbox/hostfs", "sandbox/hostdisk", "sandbox/factory", "sandbox/shim", "sandbox/state", "sandbox/shimctl", "hypervisor", "=agentclient"},
	// Leaf helpers import nothing of skiff's but each other.
	"internal": {"sandbox", "hypervisor", "agent", "commands", "config"},
}

// exceptions are test-only helpers allowed above their station.
var exceptions = map[string]bool{
	"internal/fakevm":  true, // stands in for the hypervisor and the agent
	"internal/ocitest": true, // writes bundles of the default spec
	"internal/layout":  true,
}

func TestImportsPointOneWay(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps=false", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := strings.TrimPrefix(f[0], mod)
		if exceptions[pkg] {
			continue
		}
		for prefix, bans := range forbidden {
			if !under(pkg, prefix) || moreSpecific(pkg, prefix) {
				continue
			}
			checked++
			for _, dep := range f[1:] {
				if !strings.HasPrefix(dep, mod) {
					continue
				}
				d := strings.TrimPrefix(dep, mod)
				for _, ban := range bans {
					exact, ok := strings.CutPrefix(ban, "=")
					if ((ok && d == exact) || (!ok && under(d, ban))) && !under(d, prefix) {
						t.Errorf("%s depends on %s (it must not depend on %s)", pkg, d, ban)
					}
				}
			}
		}
	}
	if checked < 15 {
		t.Errorf("only %d packages checked: is the module path right?", checked)
	}
}

// under reports whether pkg is prefix or below it.
func under(pkg, prefix string) bool { return pkg == prefix || strings.HasPrefix(pkg, prefix+"/") }

// moreSpecific reports whether a longer prefix of forbidden also covers
// pkg: its rule applies instead.
func moreSpecific(pkg, prefix string) bool {
	for p := range forbidden {
		if len(p) > len(prefix) && under(pkg, p) && under(p, prefix) {
			return true
		}
	}
	return false
}
