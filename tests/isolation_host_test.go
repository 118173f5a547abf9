package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// What the host side of skiff refuses or cleans up whatever the guest or
// the caller does (issue: the isolation boundary).

// Teardown finds its mounts whatever path --root is given by: through a
// symlink (/var/run on Debian is one to /run) or relative. delete and
// delete --force leave nothing, and never reach into a volume.
func TestStateRootThroughSymlinkAndRelative(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	real := e.Mkdir("real-root")
	link := filepath.Join(e.Dir, "link-root")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	vol := e.Mkdir("volume")
	os.WriteFile(filepath.Join(vol, "keep"), []byte("kept"), 0o644)
	b := e.Bundle("c", e2e.Sh(`echo written > /mnt/rw/new; exec sleep 60`), e2e.Mounts(e2e.Bind("/mnt/rw", vol, "rbind", "rw")))

	for _, c := range []struct {
		name, root, dir string
		force           bool
	}{
		{"symlink", link, "", false},
		{"symlink, force", link, "", true},
		{"relative", "real-root", e.Dir, true},
	} {
		id := e.ID("root")
		run := func(args ...string) e2e.Result {
			// Output to a file: a detached container's shim keeps its
			// stdio, and a pipe would not end before it does.
			out, err := os.CreateTemp(e.Dir, "out")
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			cmd := exec.Command(e2e.Bin(), append([]string{"--root", c.root}, args...)...)
			cmd.Dir, cmd.Stdout, cmd.Stderr = c.dir, out, out
			code := 0
			if err := cmd.Run(); err != nil {
				code = -1
			}
			b, _ := os.ReadFile(out.Name())
			return e2e.Result{Args: args, Code: code, Stderr: string(b)}
		}
		if r := run("run", "--detach", "--bundle", b, id); r.Code != 0 {
			t.Fatalf("%s: run: %v", c.name, r)
		}
		e2e.Poll(t, func() bool { _, err := os.Stat(filepath.Join(vol, "new")); return err == nil },
			func() string { return c.name + ": the container never wrote to its volume" })
		args := []string{"delete", id}
		if c.force {
			args = []string{"delete", "--force", id}
		} else if r := run("kill", id, "KILL"); r.Code != 0 {
			t.Fatalf("%s: kill: %v", c.name, r)
		} else {
			e2e.Poll(t, func() bool { return !strings.Contains(run("state", id).Stderr, `"running"`) }, func() string { return "still running" })
		}
		if r := run(args...); r.Code != 0 {
			t.Errorf("%s: %s: %v", c.name, strings.Join(args, " "), r)
		}
		if m := e2e.MountsBelow(real); len(m) != 0 {
			t.Errorf("%s: mounts left below the state root: %v", c.name, m)
		}
		if ents, _ := os.ReadDir(real); len(ents) != 0 {
			t.Errorf("%s: the state root still holds %v", c.name, ents)
		}
		if b, err := os.ReadFile(filepath.Join(vol, "keep")); err != nil || string(b) != "kept" {
			t.Errorf("%s: the volume lost its contents: %q, %v", c.name, b, err)
		}
		os.Remove(filepath.Join(vol, "new"))
	}
}

// A user namespace with ID mappings is refused with a clear error until
// skiff maps IDs; it is never run unmapped.
func TestUserNamespaceIsRefused(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	b := e.Bundle("userns", []string{"/bin/true"}, func(s *specs.Spec) {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
		s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	})
	id := e.ID("userns")
	if msg := e.MustFail(e.RT("create", "--bundle", b, id)); !strings.Contains(msg, "user namespace") {
		t.Errorf("refusal does not name the user namespace: %q", msg)
	}
	e.AssertNoStateDir(id, "a refused create")
}

// A cgroup that already holds someone's processes is refused, as runc
// refuses it, and those processes live on.
func TestHostCgroupInUseIsRefused(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	rel := "skiff-e2e-inuse-" + filepath.Base(e.Dir)
	dir := e2e.HostCgroupDir(t, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sleeper.Process.Kill()
		sleeper.Wait()
		os.Remove(dir)
	}()
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(sleeper.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	b := e.Bundle("cg", []string{"/bin/true"}, func(s *specs.Spec) { s.Linux.CgroupsPath = "/" + rel })
	id := e.ID("cg")
	if msg := e.MustFail(e.RT("run", "--bundle", b, id)); !strings.Contains(msg, "already holds processes") {
		t.Errorf("refusal does not say the cgroup is in use: %q", msg)
	}
	if !e2e.Alive(sleeper.Process.Pid) {
		t.Error("the cgroup's own process was killed")
	}
	e.AssertNoStateDir(id, "a refused create")
}

// A guest that owns its kernel (root in a privileged container stands in
// for it) cannot speak on the pod's network as anyone but itself: frames
// from another MAC, IP packets from another address and ARP claiming
// another address never leave its tap. The host side of the namespace's
// veth is the neighbour that must see none of them.
func TestGuestCannotSpoofItsNeighbours(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	ns := e2e.NewNetns(t)
	spoofIP := strings.TrimSuffix(ns.ContainerIP(), ".2") + ".99"
	script := fmt.Sprintf(`
busybox ping -c1 -W5 %[1]s >/dev/null && echo own=ok
busybox arping -c1 -w2 -I eth0 -s %[2]s %[1]s >/dev/null 2>&1
busybox ip addr add %[2]s/24 dev eth0
busybox ping -c1 -W2 -I %[2]s %[1]s >/dev/null 2>&1 && echo spoofed-ip=answered
busybox ip link set eth0 address 02:00:5e:00:53:99
busybox ping -c1 -W2 %[1]s >/dev/null 2>&1 && echo spoofed-mac=answered
echo done`, ns.HostIP(), spoofIP)
	b := e.Bundle("spoof", e2e.Sh(script), e2e.WithNetns(ns.Path), e2e.Privileged)
	r := e.MustOK(e.RT("run", "--bundle", b, e.ID("spoof")))
	if !strings.Contains(r.Stdout, "own=ok") || !strings.Contains(r.Stdout, "done") {
		t.Fatalf("the container could not reach its neighbour as itself, or stopped early: %v", r)
	}
	for _, leak := range []string{"spoofed-ip=answered", "spoofed-mac=answered"} {
		if strings.Contains(r.Stdout, leak) {
			t.Errorf("a spoofed frame reached the neighbour: %s", leak)
		}
	}
	if out, _ := e2e.IP("neigh", "show", "dev", ns.Host); strings.Contains(out, spoofIP) || strings.Contains(out, "02:00:5e:00:53:99") {
		t.Errorf("the neighbour learned a spoofed address:\n%s", out)
	}
}

// What the guest controls and skiff prints (a process's argv in ps, the
// guest's words in an error) reaches the operator's terminal with its
// control characters defused: an escape sequence is shown, not obeyed.
func TestGuestStringsCannotDriveTheTerminal(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	id := e.ID("esc")
	// A child shell whose $0 (in its argv) is an escape sequence.
	e.CreateStarted(id, e.Bundle("esc", e2e.Sh(`echo started; sh -c 'sleep 60; true' "$ESC"`), func(s *specs.Spec) {
		s.Process.Env = append(s.Process.Env, "ESC=\x1b]0;pwned\x07\x1b[2J")
	}), "started")
	r := e.MustOK(e.RT("ps", id))
	if strings.ContainsAny(r.Stdout, "\x1b\x07") {
		t.Errorf("ps printed the guest's escape sequence: %q", r.Stdout)
	}
	if !strings.Contains(r.Stdout, "pwned") {
		t.Errorf("ps shows no process: %q", r.Stdout)
	}
	r = e.RT("exec", id, "/no/such\x1b[2Jcommand")
	if strings.ContainsAny(r.Stderr, "\x1b") {
		t.Errorf("an error quoting the guest printed its escape sequence: %q", r.Stderr)
	}
	e.MustOK(e.RT("kill", id, "KILL"))
	e.WaitStatus(id, "stopped")
	e.MustOK(e.RT("delete", id))
}
