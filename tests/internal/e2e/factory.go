package e2e

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FactoryTOML is a configuration with VM templates saved in dir and, when
// cache > 0, a pool of that many waiting VMs.
func FactoryTOML(dir string, cache int) string {
	s := fmt.Sprintf("[factory]\ntemplate = true\ndir = %q\n", dir)
	if cache > 0 {
		s += fmt.Sprintf("cache = %d\n", cache)
	}
	return s
}

// FactoryConfig writes a FactoryTOML whose factory directory is the test's
// own, and returns its path and the factory directory. Whatever the
// factory holds when the test ends is destroyed first (pooled VMs wait
// until told to stop: a test that fails half-way must not leave them).
func (e *Env) FactoryConfig(cache int) (cfg, dir string) {
	dir = filepath.Join(e.Dir, "factory")
	cfg = e.WriteFile("factory.toml", FactoryTOML(dir, cache))
	e.T.Cleanup(func() { e.Exec(nil, io.Discard, io.Discard, []string{"--config", cfg, "factory", "destroy"}) })
	return cfg, dir
}

// TemplateDirs lists the saved templates in a factory directory.
func TemplateDirs(t *testing.T, dir string) []string {
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
