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
)

// VM templates: sandboxes restored from a saved guest must behave like
// cold-booted ones, must not share random state, and a broken template
// must never fail a sandbox.

// factoryEnv is a config whose templates live in the test's own directory.
func (e *env) factoryConfig() (cfg, dir string) {
	dir = filepath.Join(e.dir, "factory")
	cfg = filepath.Join(e.dir, "factory.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("[factory]\ntemplate = true\ndir = %q\n", dir)), 0o644)
	return cfg, dir
}

func templateDirs(t *testing.T, dir string) []string {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			if _, err := os.Stat(filepath.Join(dir, e.Name(), "template.json")); err == nil {
				out = append(out, e.Name())
			}
		}
	}
	return out
}

func TestTemplateClonesHaveTheirOwnRandomStateAndClock(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	cfg, dir := e.factoryConfig()
	e.mustOK(e.rt("--config", cfg, "factory", "init"))
	if got := templateDirs(t, dir); len(got) != 1 {
		t.Fatalf("factory init made templates %v, want one", got)
	}
	// The template's clock stopped when it was saved: let it fall behind,
	// so that a clone that kept it shows.
	time.Sleep(10 * time.Second)
	b := e.bundle("c", sh("echo rand=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'); echo now=$(date +%s)"))
	seen := map[string]bool{}
	for i := 0; i < 2; i++ {
		log := filepath.Join(e.dir, fmt.Sprintf("log-%d", i))
		r := e.mustOK(e.rt("--config", cfg, "--debug", "--log", log, "run", "--bundle", b, e.id(fmt.Sprintf("c%d", i))))
		kv := keyValues(r.stdout)
		if l, _ := os.ReadFile(log); !strings.Contains(string(l), "restored from template") {
			t.Errorf("run %d was not restored from the template; log:\n%s", i, l)
		}
		// (With RDRAND, which TCG's -cpu max and KVM hosts offer, the
		// guest kernel mixes it in anyway; this guards the rest.)
		if kv["rand"] == "" || seen[kv["rand"]] {
			t.Errorf("run %d: guest random bytes %q repeat another clone's", i, kv["rand"])
		}
		seen[kv["rand"]] = true
		now, err := strconv.ParseInt(kv["now"], 10, 64)
		if d := time.Since(time.Unix(now, 0)); err != nil || d > 5*time.Second || d < -5*time.Second {
			t.Errorf("run %d: guest clock %q is %v off the host's", i, kv["now"], d)
		}
	}
	e.mustOK(e.rt("--config", cfg, "factory", "destroy"))
	if got := templateDirs(t, dir); len(got) != 0 {
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
	skiffOnly(t)
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
			t.Parallel()
			e := newEnv(t)
			cfg, dir := e.factoryConfig()
			e.mustOK(e.rt("--config", cfg, "factory", "init"))
			tpl := templateDirs(t, dir)
			if len(tpl) != 1 {
				t.Fatalf("templates %v, want one", tpl)
			}
			if err := c.damage(filepath.Join(dir, tpl[0])); err != nil {
				t.Fatal(err)
			}
			b := e.bundle("c", sh("echo ok"))
			log := filepath.Join(e.dir, "log")
			r := e.mustOK(e.rt("--config", cfg, "--log", log, "run", "--bundle", b, e.id("c1")))
			if strings.TrimSpace(r.stdout) != "ok" {
				t.Errorf("stdout %q after a damaged template", r.stdout)
			}
			l, _ := os.ReadFile(log)
			said := false
			for _, why := range c.why {
				said = said || strings.Contains(string(l), why)
			}
			if !strings.Contains(string(l), "booting cold") || !said {
				t.Errorf("no warning that says one of %q about the unusable template in the log:\n%s", c.why, l)
			}
			log2 := filepath.Join(e.dir, "log2")
			e.mustOK(e.rt("--config", cfg, "--debug", "--log", log2, "run", "--bundle", b, e.id("c2")))
			if got := templateDirs(t, dir); len(got) != 1 {
				t.Errorf("templates after the fallback: %v, want one rebuilt", got)
			}
			if l, _ := os.ReadFile(log2); !strings.Contains(string(l), "restored from template") {
				t.Errorf("the next sandbox was not restored from a rebuilt template; log:\n%s", l)
			}
		})
	}
}

// However many files and directories a sandbox binds, it is restored from
// the template (all directories share one device, all files another):
// each file alone, each directory with what is mounted below it on the
// host, and each read-only (all the way down) when its mount says so.
func TestTemplateServesManyBinds(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	cfg, _ := e.factoryConfig()
	var mounts []specs.Mount
	script := ""
	rwOrRo := func(i int) (string, []string) {
		if i%2 == 1 {
			return "ro", []string{"rbind", "ro"}
		}
		return "rw", []string{"rbind", "rw"}
	}
	for i := 0; i < 6; i++ {
		f := filepath.Join(e.dir, fmt.Sprintf("src%d", i), "same-name")
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
		d := filepath.Join(e.dir, fmt.Sprintf("dir%d", i))
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
	b := e.bundle("many", sh(script), func(s *specs.Spec) { s.Mounts = append(s.Mounts, mounts...) })
	e.mustOK(e.rt("--config", cfg, "factory", "init"))
	log := filepath.Join(e.dir, "log")
	r := e.mustOK(e.rt("--config", cfg, "--debug", "--log", log, "run", "--bundle", b, e.id("many")))
	if l, _ := os.ReadFile(log); !strings.Contains(string(l), "restored from template") {
		t.Errorf("a sandbox with 6 file and %d directory binds was not restored from the template; log:\n%s", dirs, l)
	}
	kv := keyValues(r.stdout)
	for i := 0; i < 6; i++ {
		wantKV(t, kv, fmt.Sprintf("f%d", i), fmt.Sprintf("file-%d", i))
		want, _ := rwOrRo(i)
		wantKV(t, kv, fmt.Sprintf("w%d", i), want)
		host, _ := os.ReadFile(filepath.Join(e.dir, fmt.Sprintf("src%d", i), "same-name"))
		if wrote := strings.Contains(string(host), fmt.Sprintf("w%d", i)); wrote != (want == "rw") {
			t.Errorf("file %d (%s): the host file reads %q", i, want, host)
		}
	}
	for i := 0; i < dirs; i++ {
		wantKV(t, kv, fmt.Sprintf("d%d", i), fmt.Sprintf("dir-%d/sub-%d", i, i))
		want, _ := rwOrRo(i)
		wantKV(t, kv, fmt.Sprintf("dw%d", i), want)
		d := filepath.Join(e.dir, fmt.Sprintf("dir%d", i))
		for _, p := range []string{filepath.Join(d, "new"), filepath.Join(d, "sub", "new")} {
			if _, err := os.Stat(p); (err == nil) != (want == "rw") {
				t.Errorf("directory %d (%s): %s exists on the host: %v", i, want, p, err == nil)
			}
		}
	}
	e.mustOK(e.rt("--config", cfg, "factory", "destroy"))
}

// A guest image whose agent speaks another protocol version (skiff
// upgraded, its guest image not rebuilt) is refused with a message that
// says what to do: no template is saved from it (clones skip the version
// check and rely on the template's), and nothing is left behind.
func TestTemplateOfAnotherAgentVersionIsRefused(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	guest := map[string]string{}
	section := ""
	for _, line := range strings.Split(e.mustOK(e.rt("env")).stdout, "\n") {
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
	stage := filepath.Join(e.dir, "stage")
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
	initrd := filepath.Join(e.dir, "other-agent.img")
	os.WriteFile(initrd, append(base, extra...), 0o644)

	dir := filepath.Join(e.dir, "factory")
	cfg := filepath.Join(e.dir, "other.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("[hypervisor]\nkernel = %q\ninitrd = %q\n[factory]\ntemplate = true\ndir = %q\n",
		guest["kernel"], initrd, dir)), 0o644)
	log := filepath.Join(e.dir, "log")
	id := e.id("other")
	r := e.rt("--config", cfg, "--debug", "--log", log, "run", "--bundle", e.bundle("other", []string{"/bin/true"}), id)
	if r.code == 0 || !strings.Contains(r.stderr, "protocol version 1001") || !strings.Contains(r.stderr, "make guest") {
		t.Errorf("a guest agent of another protocol version: want a failure that says so and what to do; got %v", r)
	}
	if l, _ := os.ReadFile(log); !strings.Contains(string(l), "VM template unusable") {
		t.Errorf("no warning that the template could not be built; log:\n%s", l)
	}
	if got := templateDirs(t, dir); len(got) != 0 {
		t.Errorf("a template was saved from a guest of another protocol version: %v", got)
	}
	if r := e.rt("state", id); r.code == 0 {
		t.Errorf("the failed run left its container behind: %v", r)
	}
}
