package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// A privileged container owns its guest, kernel included, and so every
// request its VM sends to a file server, over 9p or virtio-fs: whatever
// it asks, no file on the host becomes set-user-ID or set-group-ID, no
// device node appears, and nothing is written outside the shares. Plain
// writes still work. (runc allows all of it in a volume: the behaviour
// is skiff's.)
func TestGuestCannotPlantPrivilegedFilesOnTheHost(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	for _, fs := range []string{"9p", "virtio-fs"} {
		t.Run(fs, func(t *testing.T) {
			t.Parallel()
			plantPrivilegedFiles(e.For(t), fs)
		})
	}
}

func plantPrivilegedFiles(e *e2e.Env, fs string) {
	t := e.T
	vol := e.Mkdir("vol-" + fs)
	rootfs := filepath.Join(e.Dir, "rootfs-rw-"+fs)
	if out, err := exec.Command("cp", "-a", e2e.RootfsDir(), rootfs).CombinedOutput(); err != nil {
		t.Fatalf("copy the rootfs: %v: %s", err, out)
	}
	escape := "/etc/skiff-escape-" + e.ID("x-"+fs)
	script := `
try() { name=$1; shift; if "$@" 2>/dev/null; then echo "$name=done"; else echo "$name=refused"; fi; }
for d in /vol /; do
	n=$(echo $d | tr / _)
	cp /bin/busybox $d/sh$n
	try suid$n chmod u+s $d/sh$n
	try sgid$n chmod g+s $d/sh$n
	try suidcreate$n install -m 4755 /bin/busybox $d/sh2$n
	try rootsuid$n sh -c "chown 0:0 $d/sh$n && chmod 4755 $d/sh$n"
	try blk$n mknod $d/blk$n b 8 0
	try chr$n mknod $d/chr$n c 1 3
	try fifo$n mknod $d/fifo$n p
	try plain$n sh -c "echo hello > $d/plain$n"
done
ln -s /etc /vol/etc-link
try throughlink sh -c "echo pwned > /vol/etc-link/` + filepath.Base(escape) + `"
`
	b := e.Bundle("attacker-"+fs, e2e.Sh(script), e2e.Privileged, e2e.Mounts(e2e.Bind("/vol", vol, "rbind", "rw")),
		func(s *specs.Spec) { s.Root = &specs.Root{Path: rootfs} })
	r := e.MustOK(e.RT(append(e.SharedFSArgs(fs), "run", "--bundle", b, e.ID("attacker-"+fs))...))
	kv := e2e.KeyValues(r.Stdout)

	for _, n := range []string{"_vol", "_"} {
		for _, k := range []string{"suid", "sgid", "suidcreate", "rootsuid", "blk", "chr"} {
			e2e.WantKV(t, kv, k+n, "refused")
		}
		// What is not privileged still works.
		e2e.WantKV(t, kv, "fifo"+n, "done")
		e2e.WantKV(t, kv, "plain"+n, "done")
	}
	if b, err := os.ReadFile(filepath.Join(vol, "plain_vol")); err != nil || string(b) != "hello\n" {
		t.Errorf("a plain write to the volume did not reach the host: %q, %v", b, err)
	}
	// The symlink resolves in the guest: the write lands in the
	// container's own /etc (on its rootfs), never the host's.
	if _, err := os.Stat(escape); err == nil {
		os.Remove(escape)
		t.Errorf("the guest wrote %s on the host through a symlink", escape)
	}
	for _, dir := range []string{vol, rootfs} {
		filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return nil
			}
			if m := fi.Mode(); m&(os.ModeSetuid|os.ModeSetgid|os.ModeDevice|os.ModeCharDevice) != 0 {
				t.Errorf("on the host: %s has mode %v", p, m)
			}
			return nil
		})
	}
	if t.Failed() {
		t.Logf("container output:\n%s", r.Stdout)
	}
}

// QEMU runs jailed: a uid of its own, no capability in any set,
// no_new_privs, its own seccomp filter, and a mount namespace of its own
// that holds none of the host's state; the guest's files are served by
// helpers (9p's proxy helper, virtiofsd) chrooted into their share, under
// skiff's seccomp filter and without the capabilities to set file
// capabilities or trusted xattrs.
func TestQEMURunsJailed(t *testing.T) {
	e2e.SkiffOnly(t)
	if os.Geteuid() != 0 {
		t.Skip("the jail needs root")
	}
	e := e2e.NewEnv(t)
	// A template's clone (9p), and a cold boot over virtio-fs.
	for name, args := range map[string][]string{"template": nil, "virtio-fs": e.SharedFSArgs("virtio-fs")} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			checkJailed(e.For(t), "jailed-"+name, args)
		})
	}
}

func checkJailed(e *e2e.Env, name string, args []string) {
	t := e.T
	id, pid, qemu := runningSandbox(e, name, args...)
	for field, want := range map[string]string{
		"Seccomp": "2", "NoNewPrivs": "1",
		"CapPrm": "0000000000000000", "CapEff": "0000000000000000",
		"CapBnd": "0000000000000000", "CapAmb": "0000000000000000",
	} {
		if got := procStatus(t, qemu, field); got != want {
			t.Errorf("QEMU %d: %s: %s, want %s", qemu, field, got, want)
		}
	}
	for _, u := range strings.Fields(procStatus(t, qemu, "Uid")) {
		if u == "0" {
			t.Errorf("QEMU %d runs as root: Uid: %s", qemu, procStatus(t, qemu, "Uid"))
			break
		}
	}
	host, _ := os.Readlink("/proc/self/ns/mnt")
	if ns, _ := os.Readlink(procPath(qemu, "ns/mnt")); ns == host {
		t.Errorf("QEMU %d is in the host's mount namespace", qemu)
	}
	// As an attacker in QEMU would look around.
	for _, p := range []string{"/etc/shadow", "/run/skiff", "/home", "/root", "/var"} {
		if _, err := os.Lstat(procPath(qemu, "root"+p)); err == nil {
			t.Errorf("QEMU %d sees %s", qemu, p)
		}
	}
	// Of the test's directory (state root, bundles) it sees at most its
	// own pidfile and scratch disk.
	filepath.Walk(procPath(qemu, "root"+e.Dir), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && fi.Name() != "qemu.pid" && fi.Name() != "scratch.img" {
			t.Errorf("QEMU %d sees %s", qemu, strings.TrimPrefix(p, procPath(qemu, "root")))
		}
		return nil
	})

	servers := fileServers(qemu)
	if len(servers) == 0 {
		t.Fatalf("no file server (virtfs-proxy-helper) runs beside QEMU %d", qemu)
	}
	for _, s := range servers {
		if got := procStatus(t, s, "Seccomp"); got != "2" {
			t.Errorf("file server %d: Seccomp: %s, want 2", s, got)
		}
		if got := procStatus(t, s, "NoNewPrivs"); got != "1" {
			t.Errorf("file server %d: NoNewPrivs: %s, want 1", s, got)
		}
		eff := procStatus(t, s, "CapEff")
		for _, c := range []struct {
			name string
			bit  uint
		}{{"CAP_SYS_ADMIN", 21}, {"CAP_SETFCAP", 31}, {"CAP_SYS_PTRACE", 19}, {"CAP_NET_ADMIN", 12}} {
			if capSet(eff, c.bit) {
				t.Errorf("file server %d has %s (CapEff %s)", s, c.name, eff)
			}
		}
		if root, _ := os.Readlink(procPath(s, "root")); root == "/" {
			t.Errorf("file server %d is not chrooted into its share", s)
		}
	}
	e.MustOK(e.RT("kill", id, "KILL"))
	e.WaitGone(pid)
	e.MustOK(e.RT("delete", id))
	for _, s := range servers {
		e.WaitGone(s)
	}
}

func procPath(pid int, rel string) string {
	return filepath.Join("/proc", itoa(pid), rel)
}

// fileServers are the file servers (virtfs-proxy-helper, virtiofsd) whose
// parent is QEMU's (its guard).
func fileServers(qemu int) []int {
	guard := statusInt(qemu, "PPid")
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := atoi(ent.Name())
		if err != nil || pid == qemu {
			continue
		}
		comm, _ := os.ReadFile(procPath(pid, "comm"))
		isServer := strings.HasPrefix(string(comm), "virtfs-proxy") || strings.HasPrefix(string(comm), "virtiofsd")
		if isServer && statusInt(pid, "PPid") == guard {
			pids = append(pids, pid)
		}
	}
	return pids
}

func itoa(n int) string { return strconv.Itoa(n) }

func atoi(s string) (int, error) { return strconv.Atoi(s) }

// statusInt is a numeric field of /proc/PID/status, -1 if unreadable.
func statusInt(pid int, field string) int {
	b, err := os.ReadFile(procPath(pid, "status"))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == field {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// capSet reports whether capability bit is in a /proc status mask.
func capSet(mask string, bit uint) bool {
	v, err := strconv.ParseUint(mask, 16, 64)
	return err == nil && v&(1<<bit) != 0
}
