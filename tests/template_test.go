package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// VM templates: sandboxes restored from a saved guest must behave like
// cold-booted ones, must not share random state, and a broken template
// must never fail a sandbox.

// factoryEnv is a config whose templates live in the test's own directory.
func (e *env) factoryConfig() (cfg, dir string) {
	dir = filepath.Join(e.dir, "factory")
	cfg = filepath.Join(e.dir, "factory.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("[factory]\ntemplate = true\ndir = %q\n", dir)), 0o644)
	return cfg, dir
}

func templateDirs(t *testing.T, dir string) []string {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			if _, err := os.Stat(filepath.Join(dir, e.Name(), "template.json")); err == nil {
				out = append(out, e.Name())
			}
		}
	}
	return out
}

func TestTemplateClonesHaveTheirOwnRandomStateAndClock(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	cfg, dir := e.factoryConfig()
	e.mustOK(e.rt("--config", cfg, "factory", "init"))
	if got := templateDirs(t, dir); len(got) != 1 {
		t.Fatalf("factory init made templates %v, want one", got)
	}
	// The template's clock stopped when it was saved: let it fall behind,
	// so that a clone that kept it shows.
	time.Sleep(10 * time.Second)
	b := e.bundle("c", sh("echo rand=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'); echo now=$(date +%s)"))
	seen := map[string]bool{}
	for i := 0; i < 2; i++ {
		log := filepath.Join(e.dir, fmt.Sprintf("log-%d", i))
		r := e.mustOK(e.rt("--config", cfg, "--debug", "--log", log, "run", "--bundle", b, e.id(fmt.Sprintf("c%d", i))))
		kv := keyValues(r.stdout)
		if l, _ := os.ReadFile(log); !strings.Contains(string(l), "restored from template") {
			t.Errorf("run %d was not restored from the template; log:\n%s", i, l)
		}
		// (With RDRAND, which TCG's -cpu max and KVM hosts offer, the
		// guest kernel mixes it in anyway; this guards the rest.)
		if kv["rand"] == "" || seen[kv["rand"]] {
			t.Errorf("run %d: guest random bytes %q repeat another clone's", i, kv["rand"])
		}
		seen[kv["rand"]] = true
		now, err := strconv.ParseInt(kv["now"], 10, 64)
		if d := time.Since(time.Unix(now, 0)); err != nil || d > 5*time.Second || d < -5*time.Second {
			t.Errorf("run %d: guest clock %q is %v off the host's", i, kv["now"], d)
		}
	}
	e.mustOK(e.rt("--config", cfg, "factory", "destroy"))
	if got := templateDirs(t, dir); len(got) != 0 {
		t.Errorf("templates left after destroy: %v", got)
	}
}

// A corrupt template is a warning and a cold boot, never a failure; the
// next sandbox gets a rebuilt template.
func TestCorruptTemplateFallsBackToColdBoot(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	cfg, dir := e.factoryConfig()
	e.mustOK(e.rt("--config", cfg, "factory", "init"))
	tpl := templateDirs(t, dir)
	if len(tpl) != 1 {
		t.Fatalf("templates %v, want one", tpl)
	}
	if err := os.WriteFile(filepath.Join(dir, tpl[0], "state"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := e.bundle("c", sh("echo ok"))
	log := filepath.Join(e.dir, "log")
	r := e.mustOK(e.rt("--config", cfg, "--log", log, "run", "--bundle", b, e.id("c1")))
	if strings.TrimSpace(r.stdout) != "ok" {
		t.Errorf("stdout %q after a corrupt template", r.stdout)
	}
	if l, _ := os.ReadFile(log); !strings.Contains(string(l), "booting cold") {
		t.Errorf("no warning about the unusable template in the log:\n%s", l)
	}
	e.mustOK(e.rt("--config", cfg, "run", "--bundle", b, e.id("c2")))
	if got := templateDirs(t, dir); len(got) != 1 {
		t.Errorf("templates after the fallback: %v, want one rebuilt", got)
	}
}
