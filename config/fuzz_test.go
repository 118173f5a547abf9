package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad: any config.toml is either refused with an error or yields a
// configuration that passes validation.
func FuzzLoad(f *testing.F) {
	f.Add("[hypervisor]\naccel = \"tcg\"\ndefault_memory = 1024\n")
	f.Add("accel = [")
	f.Add("[runtime]\nshared_fs = \"virtio-9p\"\nlog_level = \"debug\"\n")
	f.Add("[hypervisor]\ndefault_vcpus = -1\n")
	f.Add("")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, body string) {
		p := filepath.Join(dir, "c.toml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Load(p)
		if err != nil {
			return
		}
		if err := c.validate(); err != nil {
			t.Fatalf("Load accepted an invalid configuration: %v", err)
		}
	})
}
