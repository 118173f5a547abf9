// Package ocitest makes OCI bundles for unit tests: a rootfs directory and
// a config.json from the default spec, changed as a test needs. Only
// tests import it.
package ocitest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/sandbox/oci"
)

// Bundle writes a bundle in a temporary directory and returns it.
func Bundle(t *testing.T, mutate func(*specs.Spec)) string {
	t.Helper()
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "rootfs"), 0o755)
	s := oci.DefaultSpec()
	if mutate != nil {
		mutate(s)
	}
	b, _ := json.Marshal(s)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}
