package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
)

// VM templates: sandboxes restored from a saved guest must behave like
// cold-booted ones, must not share random state, and a broken template
// must never fail a sandbox.

// randomAndClock is a probe script's start: 16 random bytes of the guest
// and its clock, for checkRandomAndClock.
const randomAndClock = `echo rand=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo now=$(date +%s)`

// checkRandomAndClock checks what randomAndClock printed in a sandbox
// restored from a saved VM (a template, a pool): random bytes no other
// sandbox in seen had, and the host's time, give or take 5 s.
func checkRandomAndClock(t *testing.T, kv map[string]string, seen map[string]bool, which string) {
	t.Helper()
	// (With RDRAND, which TCG's -cpu max and KVM hosts offer, the guest
	// kernel mixes it in anyway; this guards the rest.)
	if kv["rand"] == "" || seen[kv["rand"]] {
		t.Errorf("%s: guest random bytes %q repeat another restored VM's", which, kv["rand"])
	}
	seen[kv["rand"]] = true
	now, err := strconv.ParseInt(kv["now"], 10, 64)
	if d := time.Since(time.Unix(now, 0)); err != nil || d > 5*time.Second || d < -5*time.Second {
		t.Errorf("%s: guest clock %q is %v off the host's", which, kv["now"], d)
	}
}

func TestTemplateClonesHaveTheirOwnRandomStateAndClock(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	cfg, dir := e.FactoryConfig(0)
	e.MustOK(e.RT("--config", cfg, "factory", "init"))
	if got := e2e.TemplateDirs(t, dir); len(got) != 1 {
		t.Fatalf("factory init made templates %v, want one", got)
	}
	// The template's clock stopped when it was saved: let it fall behind,
	// so that a clone that kept it shows.
	time.Sleep(10 * time.Second)
	b := e.Bundle("c", e2e.Sh(randomAndClock))
	seen := map[string]bool{}
	for i := 0; i < 2; i++ {
		r, log := runWithLog(e, cfg, b, e.ID(fmt.Sprintf("c%d", i)))
		e.MustOK(r)
		e2e.LogHas(t, log, "restored from template", fmt.Sprintf("run %d was not restored from the template", i))
		checkRandomAndClock(t, e2e.KeyValues(r.Stdout), seen, fmt.Sprintf("run %d", i))
	}
	e.MustOK(e.RT("--config", cfg, "factory", "destroy"))
	if got := e2e.TemplateDirs(t, dir); len(got) != 0 {
		t.Errorf("templates left after destroy: %v", got)
	}
}

// A template damaged behind skiff's back (its files truncated, deleted,
// overwritten) is a warning and a cold boot, never a failure, and the
// warning says what was wrong; the next sandbox gets a rebuilt template.
// Zeroed memory of the right size passes every check before QEMU starts:
// the clone's guest crashes and its first answer never comes, or (q35's
// TPR patching reads guest memory) QEMU fails the restore itself.
func TestDamagedTemplateFallsBackToColdBoot(t *testing.T) {
	e2e.SkiffOnly(t)
	t.Parallel()
	for _, c := range []struct {
		name   string
		damage func(dir string) error
		why    []string // one of them in the warning
	}{
		{"state overwritten", func(d string) error { return os.WriteFile(filepath.Join(d, "state"), []byte("garbage"), 0o600) }, []string{"migration"}},
		{"state deleted", func(d string) error { return os.Remove(filepath.Join(d, "state")) }, []string{"state"}},
		{"memory truncated", func(d string) error { return os.Truncate(filepath.Join(d, "memory"), 1<<20) }, []string{"want a file of"}},
		{"memory deleted", func(d string) error { return os.Remove(filepath.Join(d, "memory")) }, []string{"no such file"}},
		{"memory zeroed", func(d string) error {
			m := filepath.Join(d, "memory")
			fi, err := os.Stat(m)
			if err != nil {
				return err
			}
			if err := os.Truncate(m, 0); err != nil {
				return err
			}
			return os.Truncate(m, fi.Size())
		}, []string{"restored guest failed", "load of migration failed"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := e2e.NewEnv(t)
			cfg, dir := e.FactoryConfig(0)
			e.MustOK(e.RT("--config", cfg, "factory", "init"))
			tpl := e2e.TemplateDirs(t, dir)
			if len(tpl) != 1 {
				t.Fatalf("templates %v, want one", tpl)
			}
			if err := c.damage(filepath.Join(dir, tpl[0])); err != nil {
				t.Fatal(err)
			}
			b := e.Bundle("c", e2e.Sh("echo ok"))
			log := filepath.Join(e.Dir, "log")
			r := e.MustOK(e.RT("--config", cfg, "--log", log, "run", "--bundle", b, e.ID("c1")))
			if strings.TrimSpace(r.Stdout) != "ok" {
				t.Errorf("stdout %q after a damaged template", r.Stdout)
			}
			l, _ := os.ReadFile(log)
			said := false
			for _, why := range c.why {
				said = said || strings.Contains(string(l), why)
			}
			if !strings.Contains(string(l), "booting cold") || !said {
				t.Errorf("no warning that says one of %q about the unusable template in the log:\n%s", c.why, l)
			}
			r, log2 := runWithLog(e, cfg, b, e.ID("c2"))
			e.MustOK(r)
			if got := e2e.TemplateDirs(t, dir); len(got) != 1 {
				t.Errorf("templates after the fallback: %v, want one rebuilt", got)
			}
			e2e.LogHas(t, log2, "restored from template", "the next sandbox was not restored from a rebuilt template")
		})
	}
}

// However many files and directories a sandbox binds, it is restored from
// the template (all directories share one device, all files another):
// each file alone, each directory with what is mounted below it on the
// host, and each read-only (all the way down) when its mount says so.
func TestTemplateServesManyBinds(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	cfg, _ := e.FactoryConfig(0)
	var mounts []specs.Mount
	script := ""
	rwOrRo := func(i int) (string, []string) {
		if i%2 == 1 {
			return "ro", []string{"rbind", "ro"}
		}
		return "rw", []string{"rbind", "rw"}
	}
	for i := 0; i < 6; i++ {
		f := filepath.Join(e.Dir, fmt.Sprintf("src%d", i), "same-name")
		os.MkdirAll(filepath.Dir(f), 0o755)
		os.WriteFile(f, []byte(fmt.Sprintf("file-%d\n", i)), 0o644)
		_, opts := rwOrRo(i)
		dest := fmt.Sprintf("/many-binds-f%d", i) // created in the shared rootfs
		mounts = append(mounts, specs.Mount{Destination: dest, Type: "bind", Source: f, Options: opts})
		script += fmt.Sprintf("echo f%d=$(cat %s); echo w%d >> %s 2>/dev/null && echo w%d=rw || echo w%d=ro\n", i, dest, i, dest, i, i)
	}
	// Eight directories, each with a tmpfs mounted below it on the host.
	const dirs = 8
	for i := 0; i < dirs; i++ {
		d := filepath.Join(e.Dir, fmt.Sprintf("dir%d", i))
		os.MkdirAll(filepath.Join(d, "sub"), 0o755)
		os.WriteFile(filepath.Join(d, "seed"), []byte(fmt.Sprintf("dir-%d\n", i)), 0o644)
		if err := syscall.Mount("tmpfs", filepath.Join(d, "sub"), "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Unmount(filepath.Join(d, "sub"), syscall.MNT_DETACH) })
		os.WriteFile(filepath.Join(d, "sub", "marker"), []byte(fmt.Sprintf("sub-%d\n", i)), 0o644)
		_, opts := rwOrRo(i)
		dest := fmt.Sprintf("/many-binds-d%d", i)
		mounts = append(mounts, specs.Mount{Destination: dest, Type: "bind", Source: d, Options: opts})
		script += fmt.Sprintf("echo d%d=$(cat %s/seed)/$(cat %s/sub/marker); ", i, dest, dest) +
			fmt.Sprintf("(echo x > %s/new && echo x > %s/sub/new) 2>/dev/null && echo dw%d=rw || echo dw%d=ro\n", dest, dest, i, i)
	}
	b := e.Bundle("many", e2e.Sh(script), e2e.Mounts(mounts...))
	e.MustOK(e.RT("--config", cfg, "factory", "init"))
	r, log := runWithLog(e, cfg, b, e.ID("many"))
	e.MustOK(r)
	e2e.LogHas(t, log, "restored from template", fmt.Sprintf("a sandbox with 6 file and %d directory binds was not restored from the template", dirs))
	kv := e2e.KeyValues(r.Stdout)
	for i := 0; i < 6; i++ {
		e2e.WantKV(t, kv, fmt.Sprintf("f%d", i), fmt.Sprintf("file-%d", i))
		want, _ := rwOrRo(i)
		e2e.WantKV(t, kv, fmt.Sprintf("w%d", i), want)
		host, _ := os.ReadFile(filepath.Join(e.Dir, fmt.Sprintf("src%d", i), "same-name"))
		if wrote := strings.Contains(string(host), fmt.Sprintf("w%d", i)); wrote != (want == "rw") {
			t.Errorf("file %d (%s): the host file reads %q", i, want, host)
		}
	}
	for i := 0; i < dirs; i++ {
		e2e.WantKV(t, kv, fmt.Sprintf("d%d", i), fmt.Sprintf("dir-%d/sub-%d", i, i))
		want, _ := rwOrRo(i)
		e2e.WantKV(t, kv, fmt.Sprintf("dw%d", i), want)
		d := filepath.Join(e.Dir, fmt.Sprintf("dir%d", i))
		for _, p := range []string{filepath.Join(d, "new"), filepath.Join(d, "sub", "new")} {
			if _, err := os.Stat(p); (err == nil) != (want == "rw") {
				t.Errorf("directory %d (%s): %s exists on the host: %v", i, want, p, err == nil)
			}
		}
	}
	e.MustOK(e.RT("--config", cfg, "factory", "destroy"))
}

// A guest image whose agent speaks another protocol version (skiff
// upgraded, its guest image not rebuilt) is refused with a message that
// says what to do: no template is saved from it (clones skip the version
// check and rely on the template's), and nothing is left behind.
func TestTemplateOfAnotherAgentVersionIsRefused(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	guest := map[string]string{}
	section := ""
	for _, line := range strings.Split(e.MustOK(e.RT("env")).Stdout, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			section = line
		}
		if k, v, ok := strings.Cut(line, " = "); ok && section == "[guest]" && (k == "kernel" || k == "initrd") {
			guest[k], _ = strconv.Unquote(v)
		}
	}
	if guest["kernel"] == "" || guest["initrd"] == "" {
		t.Fatalf("no kernel or initrd in `skiff env`: %v", guest)
	}
	// The default guest image with its /init replaced: the kernel unpacks
	// concatenated cpio archives in order, the later file winning.
	stage := filepath.Join(e.Dir, "stage")
	os.Mkdir(stage, 0o755)
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	build := exec.Command(goBin, "build", "-tags", "skiff_other_protocol", "-trimpath", "-ldflags", "-s -w",
		"-o", filepath.Join(stage, "init"), "./agent/cmd/skiff-agent")
	build.Dir, build.Env = "..", append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build an agent of another protocol version: %v\n%s", err, out)
	}
	archive := exec.Command("cpio", "-o", "-H", "newc", "--quiet", "--owner", "0:0")
	archive.Dir, archive.Stdin = stage, strings.NewReader("init\n")
	extra, err := archive.Output()
	if err != nil {
		t.Fatalf("cpio: %v", err)
	}
	base, err := os.ReadFile(guest["initrd"])
	if err != nil {
		t.Fatal(err)
	}
	initrd := e.WriteFile("other-agent.img", string(append(base, extra...)))
	dir := filepath.Join(e.Dir, "factory")
	cfg := e.WriteFile("other.toml", fmt.Sprintf("[hypervisor]\nkernel = %q\ninitrd = %q\n", guest["kernel"], initrd)+e2e.FactoryTOML(dir, 0))
	id := e.ID("other")
	r, log := runWithLog(e, cfg, e.Bundle("other", []string{"/bin/true"}), id)
	if r.Code == 0 || !strings.Contains(r.Stderr, "protocol version 1001") || !strings.Contains(r.Stderr, "make guest") {
		t.Errorf("a guest agent of another protocol version: want a failure that says so and what to do; got %v", r)
	}
	e2e.LogHas(t, log, "VM template unusable", "no warning that the template could not be built")
	if got := e2e.TemplateDirs(t, dir); len(got) != 0 {
		t.Errorf("a template was saved from a guest of another protocol version: %v", got)
	}
	if r := e.RT("state", id); r.Code == 0 {
		t.Errorf("the failed run left its container behind: %v", r)
	}
}
