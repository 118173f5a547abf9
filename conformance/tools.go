//go:build tools

// Package conformance pins the OCI runtime-tools validation suite (v0.9.0,
// runtime-spec v1.0.2) in its own module so the main module keeps its
// runtime-spec. scripts/conformance.sh builds and runs the programs.
package conformance

import (
	_ "github.com/opencontainers/runtime-tools/cmd/runtimetest"
	_ "github.com/opencontainers/runtime-tools/validation/util"
)
