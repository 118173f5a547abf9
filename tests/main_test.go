// Package tests holds skiff's end-to-end tests: they drive the built binary
// exactly as a user, a shell script or podman would, against real VMs.
//
// The binary is $SKIFF_BIN (default ../bin/skiff). Because skiff keeps
// runc's command line, SKIFF_E2E_RUNTIME=/usr/sbin/runc runs the same suite
// against runc; the few checks that only make sense for a VM runtime (a
// guest kernel, qemu processes, skiff's --config) are skipped there.
//
// Each file is named for what its tests cover; the harness they share
// (set-up, leak checks, bundles, runners, fixtures) is internal/e2e.
// Nothing here may import the runtime's packages: the suite sees skiff only
// through its command line, its exit status and what the container prints.
package tests

import (
	"os"
	"testing"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

func TestMain(m *testing.M) {
	os.Exit(e2e.Main(m))
}
