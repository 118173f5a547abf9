package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Bundle is a loaded and validated OCI bundle.
type Bundle struct {
	Dir    string
	Spec   *specs.Spec
	Rootfs string // absolute
}

// LoadBundle reads DIR/config.json and checks what skiff needs from it,
// so that a bad bundle is refused before a VM is started.
func LoadBundle(dir string) (*Bundle, error) {
	if dir == "" {
		dir = "."
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("bundle %s does not exist", abs)
		}
		return nil, fmt.Errorf("bundle %s: %w", abs, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("bundle %s is not a directory", abs)
	}
	b, err := os.ReadFile(filepath.Join(abs, "config.json"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("bundle %s has no config.json (skiff spec writes one)", abs)
		}
		return nil, fmt.Errorf("read config.json: %w", err)
	}
	spec, err := ParseSpec(b)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", abs, err)
	}
	rootfs := spec.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(abs, rootfs)
	}
	fi, err = os.Stat(rootfs)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: root.path %s does not exist", abs, rootfs)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("bundle %s: root.path %s is not a directory", abs, rootfs)
	}
	return &Bundle{Dir: abs, Spec: spec, Rootfs: rootfs}, nil
}

// ParseSpec decodes and validates a config.json. It is pure, so it can be
// fuzzed.
func ParseSpec(b []byte) (*specs.Spec, error) {
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, fmt.Errorf("malformed config.json: %w", err)
	}
	if spec.Version == "" {
		return nil, fmt.Errorf("config.json: ociVersion is missing")
	}
	if spec.Root == nil || spec.Root.Path == "" {
		return nil, fmt.Errorf("config.json: root.path is missing")
	}
	if spec.Process == nil {
		return nil, fmt.Errorf("config.json: process is missing")
	}
	if len(spec.Process.Args) == 0 {
		return nil, fmt.Errorf("config.json: process.args is empty")
	}
	if spec.Process.Cwd == "" || !filepath.IsAbs(spec.Process.Cwd) {
		return nil, fmt.Errorf("config.json: process.cwd %q must be an absolute path", spec.Process.Cwd)
	}
	for i, m := range spec.Mounts {
		if !filepath.IsAbs(m.Destination) {
			return nil, fmt.Errorf("config.json: mounts[%d].destination %q must be an absolute path", i, m.Destination)
		}
	}
	if err := checkUserNamespace(&spec); err != nil {
		return nil, err
	}
	if spec.Process.Terminal && spec.Process.ConsoleSize == nil {
		// Accepted: the size is taken from the caller's terminal.
	}
	return &spec, nil
}

// checkUserNamespace refuses a spec that asks for a user namespace or ID
// mappings (podman --userns=auto, Kubernetes hostUsers: false): skiff does
// not map IDs yet, and running the container unmapped would give it, and
// the files it writes on shares, IDs it was not meant to have.
func checkUserNamespace(spec *specs.Spec) error {
	if spec.Linux == nil {
		return nil
	}
	user := len(spec.Linux.UIDMappings) > 0 || len(spec.Linux.GIDMappings) > 0
	for _, ns := range spec.Linux.Namespaces {
		user = user || ns.Type == specs.UserNamespace
	}
	if user {
		return fmt.Errorf("config.json: a user namespace with uid/gid mappings is not supported by skiff yet (the container would run with its IDs unmapped); run it without one (podman: no --userns; Kubernetes: hostUsers: true)")
	}
	return nil
}
