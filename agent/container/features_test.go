package container

import (
	"slices"
	"testing"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// The host promises protocol.MountOptions in its features document: setup
// must honour exactly those words.
func TestMountOptionsMatchProtocol(t *testing.T) {
	known := []string{"bind", "rbind", "tmpcopyup"}
	for o := range flagOpts {
		known = append(known, o)
	}
	for o := range propagationOpts {
		known = append(known, o)
	}
	slices.Sort(known)
	if want := protocol.MountOptions(); !slices.Equal(known, want) {
		t.Fatalf("setup knows mount options %q, the protocol lists %q", known, want)
	}
}
