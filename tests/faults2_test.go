package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The guest's agent crashing (it is PID 1 of the guest: the guest kernel
// panics and the VM ends) ends that sandbox: run reports the container
// killed, nothing hangs, nothing is left.
func TestFaultAgentCrash(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	// Without a PID namespace the container shares the guest's, where the
	// agent is PID 1; a SIGSEGV sent to it crashes the Go runtime.
	b := e.bundle("c", sh("echo before; kill -SEGV 1; sleep 30; echo survived"), privileged)
	r := e.rt("run", "--bundle", b, e.id("c1"))
	if r.code != 137 || strings.Contains(r.stdout, "survived") {
		t.Errorf("agent crash: %v, want exit 137 and no survivor", r)
	}
}

// A state root on a read-only or full filesystem: a clear error, and
// nothing half-written is left behind.
func TestFaultStateRootUnwritable(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	b := e.bundle("c", []string{"/bin/true"})

	for _, c := range []struct {
		name, opts, want string
	}{
		{"read-only", "ro,size=1m,mode=0700", "read-only"},
		{"full", "size=4k,nr_inodes=3,mode=0700", "no space"},
	} {
		root := filepath.Join(e.dir, c.name)
		os.MkdirAll(root, 0o700)
		if err := unix.Mount("tmpfs", root, "tmpfs", 0, c.opts); err != nil {
			t.Fatalf("mount a %s tmpfs: %v", c.name, err)
		}
		r, _ := e.rtFiles("--root", root, "create", "--bundle", b, e.id("c-"+c.name))
		msg := e.mustFail(r)
		if !strings.Contains(strings.ToLower(msg), c.want) {
			t.Errorf("%s state root: message %q does not say %q", c.name, msg, c.want)
		}
		ents, _ := os.ReadDir(root)
		for _, ent := range ents {
			t.Errorf("%s state root: %s left behind", c.name, ent.Name())
		}
		if err := unix.Unmount(root, 0); err != nil {
			t.Errorf("unmount %s: %v", root, err)
		}
	}
}
