package tests

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The pool ([factory] cache = N): N VMs wait, restored from the template;
// create takes one, attaches the sandbox's files and network to it, and a
// replacement is started behind it. A pooled sandbox must behave like any
// other, and the pool must never leave a VM behind.

// poolConfig is a config with templates and a pool of n in the test's own
// directory.
func (e *env) poolConfig(n int) (cfg, dir string) {
	dir = filepath.Join(e.dir, "factory")
	cfg = filepath.Join(e.dir, "pool.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("[factory]\ntemplate = true\ndir = %q\ncache = %d\n", dir, n)), 0o644)
	// Pooled VMs wait until told to stop: a test that fails half-way must
	// not leave them (this runs before the leak check).
	e.t.Cleanup(func() { e.exec(nil, io.Discard, io.Discard, []string{"--config", cfg, "factory", "destroy"}) })
	return cfg, dir
}

// poolMember is one line of `factory status`'s pool table.
type poolMember struct {
	id, state string
	pid       int
}

func (e *env) poolStatus(cfg string) []poolMember {
	e.t.Helper()
	r := e.mustOK(e.rt("--config", cfg, "factory", "status"))
	_, table, ok := strings.Cut(r.stdout, "MEMBER")
	if !ok {
		return nil
	}
	var out []poolMember
	for _, line := range strings.Split(strings.TrimSpace(table), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 5 {
			e.t.Fatalf("factory status: unreadable pool line %q", line)
		}
		pid, _ := strconv.Atoi(f[len(f)-1])
		out = append(out, poolMember{id: f[0], state: strings.Join(f[3:len(f)-1], " "), pid: pid})
	}
	return out
}

// waitPoolReady waits until the pool holds exactly n ready VMs of cfg and
// none being filled (the refill runs in the background) and returns them.
func (e *env) waitPoolReady(cfg string, n int) []poolMember {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var ready []poolMember
		filling := 0
		all := e.poolStatus(cfg)
		for _, m := range all {
			switch {
			case m.state == "ready" && m.pid > 0:
				ready = append(ready, m)
			case m.state == "filling":
				filling++
			}
		}
		if len(ready) == n && filling == 0 {
			return ready
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("pool never settled at %d ready VMs: %+v", n, all)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestPoolServesSandboxesAndRefills(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	cfg, dir := e.poolConfig(2)
	initLog := filepath.Join(e.dir, "log-init")
	e.mustOK(e.rt("--config", cfg, "--debug", "--log", initLog, "factory", "init"))
	first := e.waitPoolReady(cfg, 2)
	// Each waiting VM went once through a container's whole life (a
	// throwaway one) so that its guest code is translated: the sandbox's
	// own creation is then ~40% faster under TCG.
	if l, _ := os.ReadFile(initLog); strings.Count(string(l), "throwawayContainer=true") != 2 || strings.Contains(string(l), "warming the VM up") {
		t.Errorf("the pooled VMs did not both warm up; log:\n%s", l)
	}

	// A rootfs read-only all the way down, a writable and a read-only
	// bind mount (that a privileged container cannot remount writable:
	// the host's bind mount is read-only), and a file bind: as without a
	// pool.
	rw, ro := filepath.Join(e.dir, "rw"), filepath.Join(e.dir, "ro")
	os.MkdirAll(rw, 0o755)
	os.MkdirAll(ro, 0o755)
	os.WriteFile(filepath.Join(ro, "given"), []byte("from-host\n"), 0o644)
	hostFile := filepath.Join(e.dir, "single")
	os.WriteFile(hostFile, []byte("one-file\n"), 0o644)
	script := `echo rand=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo now=$(date +%s)
touch /probe 2>/dev/null && echo root=rw || echo root=ro
echo written > /rw/out && echo rwbind=ok
mount -o remount,rw /ro 2>/dev/null
echo no > /ro/x 2>/dev/null && echo robind=rw || echo robind=ro
echo given=$(cat /ro/given)
echo file=$(cat /single)`
	b := e.bundle("c", sh(script), privileged, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: "/rw", Type: "bind", Source: rw, Options: []string{"rbind", "rw"}},
			specs.Mount{Destination: "/ro", Type: "bind", Source: ro, Options: []string{"rbind", "ro"}},
			specs.Mount{Destination: "/single", Type: "bind", Source: hostFile, Options: []string{"bind", "ro"}})
	})
	seen := map[string]bool{}
	var served []map[string]string // the "VM taken from the pool" log lines
	for i := 0; i < 2; i++ {
		log := filepath.Join(e.dir, fmt.Sprintf("log-%d", i))
		r := e.mustOK(e.rt("--config", cfg, "--debug", "--log", log, "run", "--bundle", b, e.id(fmt.Sprintf("p%d", i))))
		taken := logLine(t, log, "VM taken from the pool")
		if taken == nil {
			l, _ := os.ReadFile(log)
			t.Errorf("run %d did not take a pooled VM; log:\n%s", i, l)
		} else {
			served = append(served, taken)
		}
		kv := keyValues(r.stdout)
		wantKV(t, kv, "root", "ro")
		wantKV(t, kv, "rwbind", "ok")
		wantKV(t, kv, "robind", "ro")
		wantKV(t, kv, "given", "from-host")
		wantKV(t, kv, "file", "one-file")
		if b, _ := os.ReadFile(filepath.Join(rw, "out")); string(b) != "written\n" {
			t.Errorf("run %d: the host sees %q in the writable bind mount, want written", i, b)
		}
		os.Remove(filepath.Join(rw, "out"))
		if kv["rand"] == "" || seen[kv["rand"]] {
			t.Errorf("run %d: guest random bytes %q repeat another pooled VM's", i, kv["rand"])
		}
		seen[kv["rand"]] = true
		now, err := strconv.ParseInt(kv["now"], 10, 64)
		if d := time.Since(time.Unix(now, 0)); err != nil || d > 5*time.Second || d < -5*time.Second {
			t.Errorf("run %d: guest clock %q is %v off the host's", i, kv["now"], d)
		}
		e.waitPoolReady(cfg, 2)
	}
	if _, err := os.Stat(filepath.Join(ro, "x")); err == nil {
		t.Errorf("a write to the read-only bind mount reached the host")
	}
	// The VMs that served are gone, with their directories; new ones wait.
	for _, m := range served {
		if !strings.HasPrefix(m["member"], filepath.Join(dir, "pool")+"/") {
			t.Errorf("pooled VM %q is not in the pool directory", m["member"])
		}
		if _, err := os.Stat(m["member"]); err == nil {
			t.Errorf("pooled VM %s served a sandbox and its directory is still there", m["member"])
		}
		if pid, _ := strconv.Atoi(m["pid"]); pid == 0 || alive(pid) {
			t.Errorf("pooled VM %s (qemu %s) served a sandbox and still runs", m["member"], m["pid"])
		}
	}
	if len(first) != 2 {
		t.Errorf("factory init left %d pooled VMs, want 2", len(first))
	}

	// A waiting VM that died is passed over and cleaned up.
	ready := e.waitPoolReady(cfg, 2)
	syscall.Kill(ready[0].pid, syscall.SIGKILL)
	syscall.Kill(ready[1].pid, syscall.SIGKILL)
	log := filepath.Join(e.dir, "log-dead")
	r := e.mustOK(e.rt("--config", cfg, "--debug", "--log", log, "run", "--bundle", e.bundle("t", sh("echo alive")), e.id("after-kill")))
	if strings.TrimSpace(r.stdout) != "alive" {
		t.Errorf("run after a pooled VM died: %v", r)
	}
	e.waitPoolReady(cfg, 2)

	// A waiting VM that hangs (its QEMU stopped) is dropped when taken,
	// and the sandbox restores a VM of its own.
	ready = e.waitPoolReady(cfg, 2)
	for _, m := range ready {
		syscall.Kill(m.pid, syscall.SIGSTOP)
	}
	log = filepath.Join(e.dir, "log-hung")
	r = e.mustOK(e.rt("--config", cfg, "--debug", "--log", log, "run", "--bundle", e.bundle("h", sh("echo alive")), e.id("after-hang")))
	if strings.TrimSpace(r.stdout) != "alive" {
		t.Errorf("run after a pooled VM hung: %v", r)
	}
	if l, _ := os.ReadFile(log); !strings.Contains(string(l), "cannot use pooled VM") {
		t.Errorf("the hung pooled VM was not dropped; log:\n%s", l)
	}
	for _, m := range ready {
		syscall.Kill(m.pid, syscall.SIGCONT)
	}
	e.waitPoolReady(cfg, 2)

	// A sandbox sized differently (a memory limit) cannot use the pool.
	limit := int64(700 << 20)
	log = filepath.Join(e.dir, "log-sized")
	e.mustOK(e.rt("--config", cfg, "--debug", "--log", log, "run", "--bundle", e.bundle("m", sh("true"), func(s *specs.Spec) {
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
	}), e.id("sized")))
	if l, _ := os.ReadFile(log); strings.Contains(string(l), "VM taken from the pool") {
		t.Errorf("a sandbox with its own VM size took a pooled VM; log:\n%s", l)
	}

	// With cache lowered, the next fill stops what is beyond it.
	os.WriteFile(cfg, []byte(fmt.Sprintf("[factory]\ntemplate = true\ndir = %q\ncache = 1\n", dir)), 0o644)
	e.mustOK(e.rt("--config", cfg, "factory", "init"))
	e.waitPoolReady(cfg, 1)

	// destroy stops every waiting VM: the leak check at the end finds no
	// process naming the test's directory and no mount below it.
	e.mustOK(e.rt("--config", cfg, "factory", "destroy"))
	if got := e.poolStatus(cfg); len(got) != 0 {
		t.Errorf("pooled VMs left after destroy: %+v", got)
	}
}

// A pooled VM reaches the sandbox's network namespace through its waiting
// tap, moved there and wired as skiff's own; nothing stays behind.
func TestPoolNetwork(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	ns := newNetns(t)
	cfg, dir := e.poolConfig(1)
	e.mustOK(e.rt("--config", cfg, "factory", "init"))
	e.waitPoolReady(cfg, 1)
	log := filepath.Join(e.dir, "log")
	b := e.bundle("n", sh(fmt.Sprintf("busybox ping -c1 -W5 %s && echo PING-OK", ns.hostIP())), withNetns(ns.path))
	r := e.rt("--config", cfg, "--debug", "--log", log, "run", "--bundle", b, e.id("net"))
	if l, _ := os.ReadFile(log); !strings.Contains(string(l), "VM taken from the pool") {
		t.Errorf("the sandbox did not take a pooled VM; log:\n%s", l)
	}
	if r.code != 0 || !strings.Contains(r.stdout, "PING-OK") {
		t.Errorf("ping from a pooled VM: %v", r)
	}
	ns.assertPristine(t)
	e.waitPoolReady(cfg, 1)
	// destroy --pool stops the waiting VMs and keeps the template.
	e.mustOK(e.rt("--config", cfg, "factory", "destroy", "--pool"))
	if got := e.poolStatus(cfg); len(got) != 0 {
		t.Errorf("pooled VMs left after destroy --pool: %+v", got)
	}
	if got := templateDirs(t, dir); len(got) != 1 {
		t.Errorf("templates after destroy --pool: %v, want the one kept", got)
	}
	e.mustOK(e.rt("--config", cfg, "factory", "destroy"))
}

// logLine returns the attributes of the first line of a text --log that
// has msg, nil if none has.
func logLine(t *testing.T, log, msg string) map[string]string {
	t.Helper()
	b, _ := os.ReadFile(log)
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, "msg="+strconv.Quote(msg)) && !strings.Contains(line, "msg="+msg+" ") {
			continue
		}
		attrs := map[string]string{}
		for _, f := range strings.Fields(line) {
			if k, v, ok := strings.Cut(f, "="); ok {
				attrs[k] = strings.Trim(v, `"`)
			}
		}
		return attrs
	}
	return nil
}

// A pooled sandbox whose shim died is removed by delete --force like any
// other: its VM, the pooled VM's directory and the bind mounts in it.
func TestPoolDeleteForceAfterShimKilled(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	cfg, dir := e.poolConfig(1)
	e.mustOK(e.rt("--config", cfg, "factory", "init"))
	member := e.waitPoolReady(cfg, 1)[0]
	id := e.id("crash")
	pidFile := filepath.Join(e.dir, "crash.pid")
	r, out := e.rtFiles("--config", cfg, "create", "--bundle", e.bundle("c", sh("echo UP; while true; do sleep 1; done")), "--pid-file", pidFile, id)
	e.mustOK(r)
	b, _ := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	e.mustOK(e.rt("start", id))
	e.waitOutput(out, "UP")
	if _, err := os.Stat(filepath.Join(dir, "pool", member.id, "slots", "rootfs", "c", "bin")); err != nil {
		t.Errorf("the rootfs is not bind-mounted in the pooled VM's directory: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.waitGone(pid)
	e.mustOK(e.rt("delete", "--force", id))
	if _, err := os.Stat(filepath.Join(dir, "pool", member.id)); err == nil {
		t.Errorf("the pooled VM's directory outlived delete --force")
	}
	if alive(member.pid) {
		t.Errorf("the pooled VM's QEMU (%d) outlived delete --force", member.pid)
	}
	// Whatever the refill started waits in the pool; destroy stops it.
	e.mustOK(e.rt("--config", cfg, "factory", "destroy"))
}

// Two configurations (here two VM sizes) sharing a factory directory keep
// a pool each: neither's filler takes the other's VMs for stale ones.
func TestPoolsOfTwoConfigurationsShareAFactory(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	small, dir := e.poolConfig(1)
	big := filepath.Join(e.dir, "big.toml")
	os.WriteFile(big, []byte(fmt.Sprintf("[hypervisor]\ndefault_memory = 640\n[factory]\ndir = %q\ncache = 1\n", dir)), 0o644)
	e.mustOK(e.rt("--config", small, "factory", "init"))
	e.mustOK(e.rt("--config", big, "factory", "init"))
	e.waitPoolReady(small, 1)
	// Filling the big pool again (as a shim does) leaves the small one's VM.
	e.mustOK(e.rt("--config", big, "factory", "init"))
	all := e.poolStatus(small)
	var mine, other int
	for _, m := range all {
		switch m.state {
		case "ready":
			mine++
		case "ready (another configuration)":
			other++
		}
	}
	if mine != 1 || other != 1 {
		t.Errorf("pools of two configurations: %+v, want one ready VM of each", all)
	}
	log := filepath.Join(e.dir, "log")
	e.mustOK(e.rt("--config", big, "--debug", "--log", log, "run", "--bundle", e.bundle("b", sh("true")), e.id("big")))
	if l, _ := os.ReadFile(log); !strings.Contains(string(l), "VM taken from the pool") {
		t.Errorf("the second configuration's sandbox did not take its pooled VM; log:\n%s", l)
	}
	e.mustOK(e.rt("--config", small, "factory", "destroy"))
}

// podman with a pool (its --runtime-flag passes --config): the sandbox
// takes a pooled VM, and the replacement, started from inside the
// container's cgroups, outlives podman's clean-up of them.
func TestPoolUnderPodman(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	cfg, _ := e.poolConfig(1)
	e.mustOK(e.rt("--config", cfg, "factory", "init"))
	before := e.waitPoolReady(cfg, 1)[0]
	rootfs := podmanRootfs(t)
	for i := 0; i < 2; i++ {
		name := podmanName(t, fmt.Sprintf("pool%d", i))
		r := podmanOK(t, "--runtime-flag", "config="+cfg, "run", "--rm", "--name", name, "--rootfs", rootfs, "sh", "-c", "echo from-pool")
		if strings.TrimSpace(r.stdout) != "from-pool" {
			t.Errorf("podman run %d: %v", i, r)
		}
		after := e.waitPoolReady(cfg, 1)[0]
		if after.id == before.id {
			t.Errorf("podman run %d did not take the pooled VM %s", i, before.id)
		}
		before = after
	}
}
