package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// The state root (--root): private to root, refused when others can
// write it, and a clear error when it cannot be written.

// State is private to root: other users must not reach the sockets that
// control VMs; a state root that others can write to is refused, not
// trusted.
func TestStateRootIsPrivate(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	root := filepath.Join(e.Dir, "fresh-root")
	b := e.Bundle("c", e2e.Sh("sleep 30"))
	id := e.ID("c1")
	r, _ := e.RTFiles("--root", root, "create", "--bundle", b, id)
	e.MustOK(r)
	defer e.RT("--root", root, "delete", "--force", id)
	for _, p := range []string{root, filepath.Join(root, id)} {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode&0o077 != 0 {
			t.Errorf("%s has mode %o: other users can reach it", p, st.Mode&0o777)
		}
	}
	e.MustOK(e.RT("--root", root, "delete", "--force", id))

	open := e.Mkdir("open-root")
	os.Chmod(open, 0o777)
	r, _ = e.RTFiles("--root", open, "create", "--bundle", b, id)
	if msg := e.MustFail(r); !strings.Contains(msg, open) {
		t.Errorf("refusal does not name the state root: %q", msg)
	}
}

// A state root on a read-only or full filesystem: a clear error, and
// nothing half-written is left behind.
func TestStateRootUnwritable(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	b := e.Bundle("c", []string{"/bin/true"})

	for _, c := range []struct {
		name, opts, want string
	}{
		{"read-only", "ro,size=1m,mode=0700", "read-only"},
		{"full", "size=4k,nr_inodes=3,mode=0700", "no space"},
	} {
		root := e.Mkdir(c.name)
		if err := unix.Mount("tmpfs", root, "tmpfs", 0, c.opts); err != nil {
			t.Fatalf("mount a %s tmpfs: %v", c.name, err)
		}
		r, _ := e.RTFiles("--root", root, "create", "--bundle", b, e.ID("c-"+c.name))
		msg := e.MustFail(r)
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

// No path skiff builds depends on the lengths of --root and the ID:
// containerd's IDs are 64 characters, and its Root may be long too.
func TestLongStateRootAndID(t *testing.T) {
	e := e2e.NewEnv(t)
	root := filepath.Join(e.Dir, strings.Repeat("r", 60))
	id := strings.Repeat("f", 64)
	b := e.Bundle("long", []string{"/bin/sh", "-c", "echo hello-long"})
	r := e.RT("--root", root, "run", "--bundle", b, id)
	if r.Code != 0 || !strings.Contains(r.Stdout, "hello-long") {
		t.Errorf("a 64-character ID under a %d-byte root: %v", len(root), r)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("left in the state root: %v", ents)
	}
}
