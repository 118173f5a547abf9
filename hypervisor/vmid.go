package hypervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/skiff-oci/skiff/internal/flock"
	"github.com/skiff-oci/skiff/internal/fspath"
)

// Each jailed VM runs as a user of its own, so that a guest that takes
// over its QEMU cannot signal, trace or read another VM's QEMU, nor any
// process or file of a real user. The IDs are a block no distribution
// hands out (it sits under 2^31, below the overflow and nobody IDs):
// vmGroup is the group all VMs share (a template's memory file is
// readable and writable by it: clones map it privately, and QEMU 7.2
// opens it read-write even so), and VM number n runs as uid and gid
// vmGroup+1+n.
const (
	vmGroup = 0x7fff0000
	maxVMs  = 0xfffe
)

// vmIDDir holds one lock file per VM number; a guard holds the lock of
// its VM's number for as long as it lives, so a number is free again the
// moment its guard is gone, however it ended.
const vmIDDir = "/run/skiff-vmm"

// vmID is a VM's identity and the lock that reserves it.
type vmID struct {
	uid  int
	lock *os.File
}

// takeVMID reserves the lowest free VM number.
func takeVMID() (*vmID, error) {
	if err := fspath.EnsurePrivateDir(vmIDDir, "VM identity locks", "remove it: skiff makes it again"); err != nil {
		return nil, err
	}
	for n := 0; n < maxVMs; n++ {
		f, err := os.OpenFile(filepath.Join(vmIDDir, strconv.Itoa(n)), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("VM identity lock: %w", err)
		}
		if flock.Try(f.Fd()) {
			return &vmID{uid: vmGroup + 1 + n, lock: f}, nil
		}
		f.Close()
	}
	return nil, fmt.Errorf("all %d VM identities are in use", maxVMs)
}
