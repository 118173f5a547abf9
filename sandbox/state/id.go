package state

import (
	"fmt"
	"regexp"
)

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]*$`)

// maxIDLen keeps socket paths in the state directory under the kernel's
// 108-byte limit with the default root.
const maxIDLen = 64

// ValidateID refuses an ID before it can touch disk: it becomes a directory
// name under the state root, so "/" and ".." must never get through.
func ValidateID(id string) error {
	if id == "" {
		return fmt.Errorf("container ID is empty")
	}
	if len(id) > maxIDLen {
		return fmt.Errorf("container ID %q is longer than %d characters", id, maxIDLen)
	}
	if !idPattern.MatchString(id) {
		return fmt.Errorf("invalid container ID %q: it must match %s", id, idPattern)
	}
	return nil
}
