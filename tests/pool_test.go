package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/internal/proc"
	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// The pool ([factory] cache = N): N VMs wait, restored from the template;
// create takes one, attaches the sandbox's files and network to it, and a
// replacement is started behind it. A pooled sandbox must behave like any
// other, and the pool must never leave a VM behind.

// poolMember is one line of `factory status`'s pool table.
type poolMember struct {
	id, state string
	pid       int
}

func poolStatus(e *e2e.Env, cfg string) []poolMember {
	e.T.Helper()
	r := e.MustOK(e.RT("--config", cfg, "factory", "status"))
	_, table, ok := strings.Cut(r.Stdout, "MEMBER")
	if !ok {
		return nil
	}
	var out []poolMember
	for _, line := range strings.Split(strings.TrimSpace(table), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 5 {
			e.T.Fatalf("factory status: unreadable pool line %q", line)
		}
		pid, _ := strconv.Atoi(f[len(f)-1])
		out = append(out, poolMember{id: f[0], state: strings.Join(f[3:len(f)-1], " "), pid: pid})
	}
	return out
}

// waitPoolReady waits until the pool holds exactly n ready VMs of cfg and
// none being filled (the refill runs in the background) and returns them.
func waitPoolReady(e *e2e.Env, cfg string, n int) []poolMember {
	e.T.Helper()
	var ready, all []poolMember
	e2e.PollFor(e.T, 60*time.Second, func() bool {
		ready, all = nil, poolStatus(e, cfg)
		filling := 0
		for _, m := range all {
			switch {
			case m.state == "ready" && m.pid > 0:
				ready = append(ready, m)
			case m.state == "filling":
				filling++
			}
		}
		return len(ready) == n && filling == 0
	}, func() string { return fmt.Sprintf("pool never settled at %d ready VMs: %+v", n, all) })
	return ready
}

// startPool fills a pool of n in the test's own factory directory (see
// FactoryConfig) and returns its configuration, directory and members.
func startPool(e *e2e.Env, n int, flags ...string) (cfg, dir string, ready []poolMember) {
	e.T.Helper()
	cfg, dir = e.FactoryConfig(n)
	e.MustOK(e.RT(append([]string{"--config", cfg}, append(flags, "factory", "init")...)...))
	return cfg, dir, waitPoolReady(e, cfg, n)
}

// runWithLog runs `run` with cfg and a debug --log of its own, and returns
// the result and the log's path.
func runWithLog(e *e2e.Env, cfg, bundle, id string) (e2e.Result, string) {
	e.T.Helper()
	log := e.FreshPath("log")
	return e.RT("--config", cfg, "--debug", "--log", log, "run", "--bundle", bundle, id), log
}

func TestPoolServesSandboxesAndRefills(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	initLog := filepath.Join(e.Dir, "log-init")
	cfg, dir, _ := startPool(e, 2, "--debug", "--log", initLog)

	// startPool waited for both VMs to be ready.
	e.Step("warmed up", func(e *e2e.Env) {
		// Each waiting VM went once through a container's whole life (a
		// throwaway one) so that its guest code is translated: the
		// sandbox's own creation is then ~40% faster under TCG.
		if l, _ := os.ReadFile(initLog); strings.Count(string(l), "throwawayContainer=true") != 2 || strings.Contains(string(l), "warming the VM up") {
			e.T.Errorf("the pooled VMs did not both warm up; log:\n%s", l)
		}
	})

	e.Step("pooled sandboxes behave as any other", func(e *e2e.Env) {
		t := e.T
		// A rootfs read-only all the way down, a writable and a read-only
		// bind mount (that a privileged container cannot remount
		// writable: the host's bind mount is read-only), and a file bind:
		// as without a pool.
		rw := e.Mkdir("rw")
		ro := filepath.Dir(e.WriteFile("ro/given", "from-host\n"))
		hostFile := e.WriteFile("single", "one-file\n")
		script := randomAndClock + `
touch /probe 2>/dev/null && echo root=rw || echo root=ro
echo written > /rw/out && echo rwbind=ok
mount -o remount,rw /ro 2>/dev/null
echo no > /ro/x 2>/dev/null && echo robind=rw || echo robind=ro
echo given=$(cat /ro/given)
echo file=$(cat /single)`
		b := e.Bundle("c", e2e.Sh(script), e2e.Privileged, e2e.Mounts(
			e2e.Bind("/rw", rw, "rbind", "rw"),
			e2e.Bind("/ro", ro, "rbind", "ro"),
			e2e.Bind("/single", hostFile, "bind", "ro")))
		seen := map[string]bool{}
		var served []map[string]string // the "VM taken from the pool" log lines
		for i := 0; i < 2; i++ {
			r, log := runWithLog(e, cfg, b, e.ID(fmt.Sprintf("p%d", i)))
			e.MustOK(r)
			if taken := e2e.LogLine(log, "VM taken from the pool"); taken == nil {
				l, _ := os.ReadFile(log)
				t.Errorf("run %d did not take a pooled VM; log:\n%s", i, l)
			} else {
				served = append(served, taken)
			}
			kv := e2e.KeyValues(r.Stdout)
			e2e.WantKVs(t, kv, map[string]string{
				"root": "ro", "rwbind": "ok", "robind": "ro", "given": "from-host", "file": "one-file",
			})
			if b, _ := os.ReadFile(filepath.Join(rw, "out")); string(b) != "written\n" {
				t.Errorf("run %d: the host sees %q in the writable bind mount, want written", i, b)
			}
			os.Remove(filepath.Join(rw, "out"))
			checkRandomAndClock(t, kv, seen, fmt.Sprintf("run %d", i))
			waitPoolReady(e, cfg, 2)
		}
		if _, err := os.Stat(filepath.Join(ro, "x")); err == nil {
			t.Errorf("a write to the read-only bind mount reached the host")
		}
		// The VMs that served are gone, with their directories; new ones
		// wait.
		for _, m := range served {
			if !strings.HasPrefix(m["member"], filepath.Join(dir, "pool")+"/") {
				t.Errorf("pooled VM %q is not in the pool directory", m["member"])
			}
			if _, err := os.Stat(m["member"]); err == nil {
				t.Errorf("pooled VM %s served a sandbox and its directory is still there", m["member"])
			}
			if pid, _ := strconv.Atoi(m["pid"]); pid == 0 || e2e.Alive(pid) {
				t.Errorf("pooled VM %s (qemu %s) served a sandbox and still runs", m["member"], m["pid"])
			}
		}
	})

	e.Step("a dead waiting VM is passed over", func(e *e2e.Env) {
		ready := waitPoolReady(e, cfg, 2)
		syscall.Kill(ready[0].pid, syscall.SIGKILL)
		syscall.Kill(ready[1].pid, syscall.SIGKILL)
		r, _ := runWithLog(e, cfg, e.Bundle("t", e2e.Sh("echo alive")), e.ID("after-kill"))
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != "alive" {
			e.T.Errorf("run after a pooled VM died: %v", r)
		}
		waitPoolReady(e, cfg, 2)
	})

	e.Step("a hung waiting VM is dropped", func(e *e2e.Env) {
		// Its QEMU stopped: dropped when taken, and the sandbox restores
		// a VM of its own.
		ready := waitPoolReady(e, cfg, 2)
		for _, m := range ready {
			syscall.Kill(m.pid, syscall.SIGSTOP)
		}
		r, log := runWithLog(e, cfg, e.Bundle("h", e2e.Sh("echo alive")), e.ID("after-hang"))
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != "alive" {
			e.T.Errorf("run after a pooled VM hung: %v", r)
		}
		e2e.LogHas(e.T, log, "cannot use pooled VM", "the hung pooled VM was not dropped")
		for _, m := range ready {
			syscall.Kill(m.pid, syscall.SIGCONT)
		}
		waitPoolReady(e, cfg, 2)
	})

	e.Step("a sandbox of another size boots its own VM", func(e *e2e.Env) {
		limit := int64(700 << 20)
		r, log := runWithLog(e, cfg, e.Bundle("m", e2e.Sh("true"), func(s *specs.Spec) {
			s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
		}), e.ID("sized"))
		e.MustOK(r)
		if l, _ := os.ReadFile(log); strings.Contains(string(l), "VM taken from the pool") {
			e.T.Errorf("a sandbox with its own VM size took a pooled VM; log:\n%s", l)
		}
	})

	e.Step("a lower cache stops the extra VMs", func(e *e2e.Env) {
		if err := os.WriteFile(cfg, []byte(e2e.FactoryTOML(dir, 1)), 0o644); err != nil {
			e.T.Fatal(err)
		}
		e.MustOK(e.RT("--config", cfg, "factory", "init"))
		waitPoolReady(e, cfg, 1)
	})

	e.Step("destroy stops every waiting VM", func(e *e2e.Env) {
		// The leak check at the end finds no process naming the test's
		// directory and no mount below it.
		e.MustOK(e.RT("--config", cfg, "factory", "destroy"))
		if got := poolStatus(e, cfg); len(got) != 0 {
			e.T.Errorf("pooled VMs left after destroy: %+v", got)
		}
	})
}

// A pooled VM reaches the sandbox's network namespace through its waiting
// tap, moved there and wired as skiff's own; nothing stays behind.
func TestPoolNetwork(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	ns := e2e.NewNetns(t)
	cfg, dir, _ := startPool(e, 1)
	b := e.Bundle("n", e2e.Sh(fmt.Sprintf("busybox ping -c1 -W5 %s && echo PING-OK", ns.HostIP())), e2e.WithNetns(ns.Path))
	r, log := runWithLog(e, cfg, b, e.ID("net"))
	e2e.LogHas(t, log, "VM taken from the pool", "the sandbox did not take a pooled VM")
	if r.Code != 0 || !strings.Contains(r.Stdout, "PING-OK") {
		t.Errorf("ping from a pooled VM: %v", r)
	}
	ns.AssertPristine(t)
	waitPoolReady(e, cfg, 1)
	// destroy --pool stops the waiting VMs and keeps the template.
	e.MustOK(e.RT("--config", cfg, "factory", "destroy", "--pool"))
	if got := poolStatus(e, cfg); len(got) != 0 {
		t.Errorf("pooled VMs left after destroy --pool: %+v", got)
	}
	if got := e2e.TemplateDirs(t, dir); len(got) != 1 {
		t.Errorf("templates after destroy --pool: %v, want the one kept", got)
	}
}

// A pooled sandbox whose shim died is removed by delete --force like any
// other: its VM, the pooled VM's directory and the bind mounts in it.
func TestPoolDeleteForceAfterShimKilled(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	cfg, dir, ready := startPool(e, 1)
	member := ready[0]
	id := e.ID("crash")
	pid, _ := e.CreateStarted(id, e.Bundle("c", e2e.Sh("echo UP; while true; do sleep 1; done")), "UP", "--config", cfg)
	if _, err := os.Stat(filepath.Join(dir, "pool", member.id, "slots", "rootfs", "c", "bin")); err != nil {
		t.Errorf("the rootfs is not bind-mounted in the pooled VM's directory: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.WaitGone(pid)
	e.MustOK(e.RT("delete", "--force", id))
	if _, err := os.Stat(filepath.Join(dir, "pool", member.id)); err == nil {
		t.Errorf("the pooled VM's directory outlived delete --force")
	}
	if e2e.Alive(member.pid) {
		t.Errorf("the pooled VM's QEMU (%d) outlived delete --force", member.pid)
	}
	// Whatever the refill started waits in the pool: the clean-up of
	// FactoryConfig destroys it, before the leak check.
}

// Two configurations (here two VM sizes) sharing a factory directory keep
// a pool each: neither's filler takes the other's VMs for stale ones.
func TestPoolsOfTwoConfigurationsShareAFactory(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	small, dir, _ := startPool(e, 1)
	big := e.WriteFile("big.toml", fmt.Sprintf("[hypervisor]\ndefault_memory = 640\n[factory]\ndir = %q\ncache = 1\n", dir))
	e.MustOK(e.RT("--config", big, "factory", "init"))
	// Filling the big pool again (as a shim does) leaves the small one's VM.
	e.MustOK(e.RT("--config", big, "factory", "init"))
	all := poolStatus(e, small)
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
	r, log := runWithLog(e, big, e.Bundle("b", e2e.Sh("true")), e.ID("big"))
	e.MustOK(r)
	e2e.LogHas(t, log, "VM taken from the pool", "the second configuration's sandbox did not take its pooled VM")
}

// podman with a pool (its --runtime-flag passes --config): the sandbox
// takes a pooled VM, and the replacement, started from inside the
// container's cgroups, outlives podman's clean-up of them.
func TestPoolUnderPodman(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	cfg, _, ready := startPool(e, 1)
	before := ready[0]
	rootfs := e2e.PodmanRootfs(t)
	for i := 0; i < 2; i++ {
		name := e2e.PodmanName(t, fmt.Sprintf("pool%d", i))
		r := e2e.PodmanOK(t, "--runtime-flag", "config="+cfg, "run", "--rm", "--name", name, "--rootfs", rootfs, "sh", "-c", "echo from-pool")
		if strings.TrimSpace(r.Stdout) != "from-pool" {
			t.Errorf("podman run %d: %v", i, r)
		}
		after := waitPoolReady(e, cfg, 1)[0]
		if after.id == before.id {
			t.Errorf("podman run %d did not take the pooled VM %s", i, before.id)
		}
		before = after
	}
}

// An auto-sized pool (cache_auto) keeps one VM waiting while nothing
// starts, and grows towards its bound when sandboxes start in a burst.
func TestPoolSizedByStartRate(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	cfg, _ := e.FactoryConfig(3)
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("cache_auto = true\n")
	f.Close()
	e.MustOK(e.RT("--config", cfg, "factory", "init"))
	waitPoolReady(e, cfg, 1)

	b := e.Bundle("burst", []string{"/bin/true"})
	for i := 0; i < 3; i++ {
		e.MustOK(e.RT("--config", cfg, "run", "--bundle", b, e.ID(fmt.Sprintf("burst%d", i))))
	}
	// Three starts in the last minute: the refills aim at three.
	var all []poolMember
	e2e.PollFor(t, 60*time.Second, func() bool {
		all = poolStatus(e, cfg)
		return len(all) >= 2
	}, func() string { return fmt.Sprintf("the pool did not grow after a burst of starts: %+v", all) })
	// Let the refills finish before the factory is destroyed (a filler
	// at work would start a VM after that).
	e2e.PollFor(t, 120*time.Second, func() bool {
		all = poolStatus(e, cfg)
		for _, m := range all {
			if m.state != "ready" {
				return false
			}
		}
		return len(all) > 0
	}, func() string { return fmt.Sprintf("the pool never settled: %+v", all) })
}

// A refill works at the lowest CPU priority, and so does the VM it starts
// while it waits: on a busy host it must not slow the sandboxes that start
// and run. A sandbox that takes such a VM gets it at the default priority,
// with all its threads.
func TestPoolRefillYieldsTheCPU(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	cfg, _, _ := startPool(e, 1)
	take := func(name string) int {
		id := e.ID(name)
		pid, _ := e.CreateStarted(id, e.Bundle(name, []string{"sleep", "60"}), "", "--config", cfg)
		t.Cleanup(func() { e.ForceDelete(id, pid) })
		return e.QEMUPID(id)
	}
	take("first") // its shim refills the pool
	refill := waitPoolReady(e, cfg, 1)[0]
	guard, err := proc.Parent(refill.pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{refill.pid, guard} {
		if n := niceOfAll(t, pid); n != "19" {
			t.Errorf("process %d of the refilled VM runs at nice %s, want 19", pid, n)
		}
	}
	if qemu := take("second"); qemu != refill.pid {
		t.Errorf("the second sandbox's VMM is %d, not the refilled VM's %d", qemu, refill.pid)
	} else if n := niceOfAll(t, qemu); n != "0" {
		t.Errorf("the taken VM's QEMU threads run at nice %s, want 0", n)
	}
}

// niceOfAll is the nice value of every thread of pid, or "mixed: ...".
func niceOfAll(t *testing.T, pid int) string {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			continue // the thread ended
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		seen[fields[16]] = true // field 19: nice
	}
	if len(seen) != 1 {
		return fmt.Sprintf("mixed: %v", seen)
	}
	for n := range seen {
		return n
	}
	return ""
}
