package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// rootlessUser is the account the rootless tests run podman as; the test
// makes it (and its subordinate IDs) if the machine has none.
const rootlessUser = "skiff-rootless"

// rootlessAccount makes sure rootlessUser exists with 65536 subordinate
// uids and gids and a runtime directory, and returns its uid and
// XDG_RUNTIME_DIR.
func rootlessAccount(t *testing.T) (int, string) {
	t.Helper()
	if _, err := exec.LookPath("newuidmap"); err != nil {
		t.Fatalf("newuidmap is missing (scripts/install-deps.sh installs uidmap): %v", err)
	}
	u, err := user.Lookup(rootlessUser)
	if err != nil {
		if out, err := exec.Command("useradd", "--create-home", "--shell", "/bin/sh", rootlessUser).CombinedOutput(); err != nil {
			t.Fatalf("useradd: %v: %s", err, out)
		}
		if u, err = user.Lookup(rootlessUser); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		b, _ := os.ReadFile(f)
		if !bytes.Contains(b, []byte("\n"+rootlessUser+":")) && !bytes.HasPrefix(b, []byte(rootlessUser+":")) {
			if out, err := exec.Command("usermod", "--add-subuids", "600000-665535", "--add-subgids", "600000-665535", rootlessUser).CombinedOutput(); err != nil {
				t.Fatalf("usermod: %v: %s", err, out)
			}
			break
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	run := fmt.Sprintf("/run/user/%d", uid)
	if err := os.MkdirAll(run, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chown(run, uid, gid)
	return uid, run
}

// asUser runs podman as rootlessUser, with runtime, in dir.
func asUser(t *testing.T, xdg string, args ...string) e2e.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*e2e.CmdTimeout)
	defer cancel()
	full := append([]string{"-u", rootlessUser, "--", "env", "XDG_RUNTIME_DIR=" + xdg, "HOME=/home/" + rootlessUser,
		"podman", "--runtime", e2e.Bin()}, args...)
	cmd := exec.CommandContext(ctx, "runuser", full...)
	cmd.Dir = "/"
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("runuser: %v", err)
	}
	return e2e.Result{Args: append([]string{"(rootless podman)"}, args...), Code: code, Stdout: out.String(), Stderr: errb.String()}
}

// Rootless podman (a user namespace made by newuidmap, state under
// $XDG_RUNTIME_DIR, no host cgroups) runs a container through the
// runtime: with skiff, in a VM of its own kernel that runs as the user.
// A volume the user owns gets the container's file as the user's. This
// host's /dev/net/tun is root's alone, so the container has loopback only.
func TestRootlessPodman(t *testing.T) {
	e := e2e.NewEnv(t)
	uid, xdg := rootlessAccount(t)
	dir, err := os.MkdirTemp("/tmp", "skiff-rootless-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rootfs, vol := filepath.Join(dir, "rootfs"), filepath.Join(dir, "vol")
	if out, err := exec.Command("cp", "-a", e2e.RootfsDir(), rootfs).CombinedOutput(); err != nil {
		t.Fatalf("copy rootfs: %v: %s", err, out)
	}
	os.Mkdir(vol, 0o755)
	for _, p := range []string{dir, rootfs, vol} {
		exec.Command("chown", "-R", fmt.Sprintf("%d:%d", uid, uid), p).Run()
	}
	name := e.ID("rootless")
	r := asUser(t, xdg, "run", "--rm", "--name", name, "--network", "none", "-v", vol+":/vol",
		"--rootfs", rootfs, "/bin/sh", "-c", "echo release=$(uname -r); echo id=$(id -u); echo written > /vol/f; echo done=yes")
	if r.Code != 0 {
		t.Fatalf("rootless podman run: %v", r)
	}
	kv := e2e.KeyValues(r.Stdout)
	e2e.WantKV(t, kv, "done", "yes")
	e2e.WantKV(t, kv, "id", "0")
	host, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	if e2e.IsSkiff() && kv["release"] == strings.TrimSpace(string(host)) {
		t.Errorf("the container ran on the host's kernel (%s), not in a VM", kv["release"])
	}
	var st os.FileInfo
	if st, err = os.Stat(filepath.Join(vol, "f")); err != nil {
		t.Fatalf("the container's file is not in the volume: %v", err)
	}
	if got := int(st.Sys().(*syscall.Stat_t).Uid); got != uid {
		t.Errorf("the container's file in the volume belongs to uid %d, want the user's (%d)", got, uid)
	}
	if e2e.IsSkiff() {
		// Nothing left: no state, no VM of the user's.
		state := filepath.Join(xdg, "skiff")
		if ents, _ := os.ReadDir(state); len(ents) > 0 {
			t.Errorf("state left in %s: %v", state, ents)
		}
		if out, _ := exec.Command("pgrep", "-u", strconv.Itoa(uid), "qemu").Output(); len(out) > 0 {
			t.Errorf("a QEMU of the user's outlived the container: %s", out)
		}
	}
}
