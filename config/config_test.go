package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadOverridesDefaults(t *testing.T) {
	c, err := Load(writeConfig(t, "[hypervisor]\naccel = \"tcg\"\ndefault_memory = 1024\nkernel = \"/k\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Hypervisor.Accel != "tcg" || c.Hypervisor.DefaultMemory != 1024 || c.Hypervisor.Kernel != "/k" {
		t.Errorf("not applied: %+v", c.Hypervisor)
	}
	if c.Hypervisor.DefaultVCPUs != 1 || c.Runtime.SharedFS != "auto" {
		t.Errorf("defaults lost: %+v", c)
	}
	if c.Hypervisor.Initrd == "" || c.Hypervisor.Path == "" {
		t.Error("guest paths not resolved")
	}
}

func TestLoadErrorsNameTheProblem(t *testing.T) {
	cases := map[string]string{
		"accel = [":                               "config.toml",
		"[hypervisor]\naccel = \"fast\"":          "hypervisor.accel",
		"[hypervisor]\ndefault_vcpus = 0":         "default_vcpus",
		"[hypervisor]\nkernal = \"/x\"":           "unknown keys: hypervisor.kernal",
		"[runtime]\nshared_fs = \"nfs\"":          "shared_fs",
		"[hypervisor]\ndefault_memory = \"lots\"": "default_memory",
		"[factory]\ndir = \"factory\"":            "must be an absolute path",
		"[factory]\ncache = -1":                   "factory.cache = -1",
		"[factory]\ncache = 1000":                 "between 0 and 64",
		"[factory]\ncache = 2\ntemplate = false":  "needs factory.template = true",
		"[factory]\ncache_auto = true":            "cache_auto = true needs factory.cache",
	}
	for body, want := range cases {
		_, err := Load(writeConfig(t, body))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error mentioning %q", body, err, want)
		}
	}
	if _, err := Load("/nonexistent/config.toml"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing explicit file: %v", err)
	}
}
