// Package state is skiff's --root on disk: container IDs, the directory of
// each container and of each sandbox, their records (written atomically,
// under the container's lock), the lock itself, and the status of a
// container computed live, with the guards that say which verb may act on
// which status. It never starts or talks to a process: it must not import
// the shim, the factory, the host plumbing or the hypervisor.
package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/skiff-oci/skiff/internal/userns"

	"github.com/skiff-oci/skiff/internal/fspath"
)

// DefaultRoot is the state root when --root is not given, for root.
const DefaultRoot = "/run/skiff"

// DefaultRootFor is the state root when --root is not given: DefaultRoot,
// or $XDG_RUNTIME_DIR/skiff when rootless (as runc's).
func DefaultRootFor() string { return userns.RuntimeDir("skiff", DefaultRoot) }

// ErrNotExist is returned for an ID without a state directory.
var ErrNotExist = errors.New("does not exist")

// Root is the state root: one directory per container. A sandbox's
// directory is the directory of the container that made it.
type Root string

// Container returns the state directory of container id; id must be valid.
func (r Root) Container(id string) ContainerDir {
	return ContainerDir(filepath.Join(string(r), id))
}

// Sandbox returns the directory of sandbox id; id must be valid.
func (r Root) Sandbox(id string) SandboxDir { return SandboxDir(filepath.Join(string(r), id)) }

// ensure creates the root, private to its owner: other users must not
// reach sockets that control VMs. An existing root that someone else owns,
// or that others may write to, is refused: a socket planted there must
// never be trusted.
func (r Root) ensure() error {
	return fspath.EnsurePrivateDir(string(r), "state root", "use another --root")
}

// Claim makes the state directory of a new container and locks it. It
// fails if the ID is taken: mkdir is the atomic claim.
func (r Root) Claim(id string) (ContainerDir, *Lock, error) {
	if err := ValidateID(id); err != nil {
		return "", nil, err
	}
	if err := r.ensure(); err != nil {
		return "", nil, err
	}
	d := r.Container(id)
	if err := os.Mkdir(string(d), 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return "", nil, fmt.Errorf("container %q already exists", id)
		}
		return "", nil, fmt.Errorf("create state directory: %w", err)
	}
	l, err := d.Lock()
	if err != nil {
		os.Remove(string(d))
		return "", nil, err
	}
	return d, l, nil
}

// IDs lists the container IDs under the root, sorted.
func (r Root) IDs() ([]string, error) {
	ents, err := os.ReadDir(string(r))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && ValidateID(e.Name()) == nil {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	return ids, nil
}
