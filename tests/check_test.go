package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// checkResult is one entry of `skiff check --json`.
type checkResult struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix"`
}

// checkNames are the requirements `skiff check` reports on, each once.
var checkNames = []string{
	"config", "qemu", "state root", "accelerator", "guest kernel",
	"guest initramfs", "guest image", "vhost-vsock", "virtiofsd", "cgroups",
	"networking",
}

// checkPVMHost is whether this host's /dev/kvm belongs to PVM, as on the
// project's own machines.
func checkPVMHost() bool {
	_, err := os.Stat("/sys/module/kvm_pvm")
	return err == nil
}

func (e *env) checkJSON(args ...string) (result, []checkResult) {
	e.t.Helper()
	r := e.rt(append(args, "check", "--json")...)
	var rs []checkResult
	if err := json.Unmarshal([]byte(r.stdout), &rs); err != nil {
		e.t.Fatalf("check --json printed invalid JSON: %v\n%v", err, r)
	}
	return r, rs
}

// checkLines maps each check name to its line of the `check` table.
func checkLines(t *testing.T, out string) map[string]string {
	t.Helper()
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || (f[0] != "pass" && f[0] != "warn" && f[0] != "fail") {
			continue
		}
		for _, name := range checkNames {
			if strings.HasPrefix(strings.TrimSpace(strings.TrimPrefix(l, f[0])), name+" ") {
				lines[name] = l
			}
		}
	}
	return lines
}

func TestCheckThisHost(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	start := time.Now()
	r := e.rt("check")
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("check took %v, want a few seconds", took)
	}
	e.mustOK(r)
	if !strings.HasPrefix(r.stdout, "STATUS") || !strings.Contains(strings.SplitN(r.stdout, "\n", 2)[0], "DETAIL") {
		t.Errorf("check table has no STATUS ... DETAIL header:\n%s", r.stdout)
	}
	lines := checkLines(t, r.stdout)
	for _, name := range checkNames {
		if lines[name] == "" {
			t.Errorf("check printed no line for %q:\n%s", name, r.stdout)
		}
	}
	accel := lines["accelerator"]
	if checkPVMHost() {
		for _, want := range []string{"warn", "TCG", "PVM"} {
			if !strings.Contains(accel, want) {
				t.Errorf("on a PVM host the accelerator line should say %s: %q", want, accel)
			}
		}
	}
	// Every warning or failure is followed by its fix.
	ls := strings.Split(r.stdout, "\n")
	for i, l := range ls {
		if (strings.HasPrefix(l, "warn") || strings.HasPrefix(l, "fail")) && (i+1 >= len(ls) || !strings.HasPrefix(strings.TrimSpace(ls[i+1]), "fix: ")) {
			t.Errorf("no fix under %q", l)
		}
	}
	ents, _ := os.ReadDir(e.root)
	for _, ent := range ents {
		if strings.HasPrefix(ent.Name(), ".skiff-check") {
			t.Errorf("check left %s in the state root", ent.Name())
		}
	}
}

func TestCheckJSON(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	r, rs := e.checkJSON()
	e.mustOK(r)
	seen := map[string]bool{}
	warned := false
	for _, c := range rs {
		if seen[c.Name] {
			t.Errorf("check %q reported twice", c.Name)
		}
		seen[c.Name] = true
		switch c.Status {
		case "pass":
		case "warn":
			warned = true
			if c.Fix == "" {
				t.Errorf("%s warns without a fix", c.Name)
			}
		default:
			t.Errorf("%s: status %q on this host (%s)", c.Name, c.Status, c.Detail)
		}
		if c.Detail == "" {
			t.Errorf("%s: no detail", c.Name)
		}
	}
	for _, name := range checkNames {
		if !seen[name] {
			t.Errorf("check --json has no entry %q", name)
		}
	}
	if len(rs) != len(checkNames) {
		t.Errorf("check --json has %d entries, want %d (one per check)", len(rs), len(checkNames))
	}

	// --strict turns warnings into failure.
	strict := e.rt("check", "--strict")
	if warned && strict.code == 0 {
		t.Errorf("check --strict exited 0 with warnings: %v", strict)
	}
	if !warned && strict.code != 0 {
		t.Errorf("check --strict failed without warnings: %v", strict)
	}
}

// checkConfigFile writes a skiff config.toml in the test's directory.
func (e *env) checkConfigFile(content string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, "config.toml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func TestCheckMissingKernel(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	const kernel = "/nonexistent/vmlinux"
	cfg := e.checkConfigFile("[hypervisor]\nkernel = \"" + kernel + "\"\n")

	r := e.rt("--config", cfg, "check")
	if r.code == 0 {
		t.Errorf("check with a missing kernel exited 0: %v", r)
	}
	line := checkLines(t, r.stdout)["guest kernel"]
	if !strings.HasPrefix(line, "fail") || !strings.Contains(line, kernel) {
		t.Errorf("guest kernel line should fail naming %s: %q\n%s", kernel, line, r.stdout)
	}
	if !strings.Contains(r.stdout, "fix: ") {
		t.Errorf("no fix printed:\n%s", r.stdout)
	}

	r, rs := e.checkJSON("--config", cfg)
	if r.code == 0 {
		t.Errorf("check --json with a missing kernel exited 0")
	}
	for _, c := range rs {
		if c.Name == "guest kernel" && (c.Status != "fail" || !strings.Contains(c.Detail, kernel)) {
			t.Errorf("guest kernel entry %+v, want a failure naming %s", c, kernel)
		}
	}
}

func TestCheckBadConfig(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	cfg := e.checkConfigFile("[hypervisor]\nno_such_key = 1\n")
	r := e.rt("--config", cfg, "check")
	line := checkLines(t, r.stdout)["config"]
	if r.code == 0 || !strings.HasPrefix(line, "fail") || !strings.Contains(line, "no_such_key") {
		t.Errorf("check with an unknown config key: want a failing config line naming it, got %q\n%v", line, r)
	}
}

// envOutput is the part of `skiff env --json` the tests read.
type envOutput struct {
	Skiff struct {
		Version       string `json:"version"`
		AgentProtocol int    `json:"agentProtocol"`
		StateRoot     string `json:"stateRoot"`
	} `json:"skiff"`
	Config struct {
		File string `json:"file"`
	} `json:"config"`
	Hypervisor struct {
		QEMU            string `json:"qemu"`
		QEMUVersion     string `json:"qemuVersion"`
		AccelConfigured string `json:"accelConfigured"`
		Accel           string `json:"accel"`
		AccelReason     string `json:"accelReason"`
	} `json:"hypervisor"`
	Guest struct {
		Kernel string `json:"kernel"`
		Initrd string `json:"initrd"`
	} `json:"guest"`
	Host struct {
		Kernel  string `json:"kernel"`
		Cgroups struct {
			Mode string `json:"mode"`
		} `json:"cgroups"`
	} `json:"host"`
}

func (e *env) envJSON(args ...string) envOutput {
	e.t.Helper()
	r := e.mustOK(e.rt(append(args, "env", "--json")...))
	var v envOutput
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		e.t.Fatalf("env --json printed invalid JSON: %v\n%s", err, r.stdout)
	}
	return v
}

func TestEnvJSON(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	v := e.envJSON()
	if v.Skiff.Version == "" || v.Skiff.AgentProtocol < 1 || v.Skiff.StateRoot != e.root {
		t.Errorf("skiff section %+v: want a version, a protocol and state root %s", v.Skiff, e.root)
	}
	if !filepath.IsAbs(v.Guest.Kernel) || !filepath.IsAbs(v.Guest.Initrd) || !filepath.IsAbs(v.Hypervisor.QEMU) {
		t.Errorf("resolved paths should be absolute: kernel %q, initrd %q, qemu %q", v.Guest.Kernel, v.Guest.Initrd, v.Hypervisor.QEMU)
	}
	if v.Hypervisor.AccelConfigured != "auto" || (v.Hypervisor.Accel != "kvm" && v.Hypervisor.Accel != "tcg") || v.Hypervisor.AccelReason == "" {
		t.Errorf("accel: configured %q, resolved %q (%q); want auto resolved to kvm or tcg with a reason",
			v.Hypervisor.AccelConfigured, v.Hypervisor.Accel, v.Hypervisor.AccelReason)
	}
	if checkPVMHost() && (v.Hypervisor.Accel != "tcg" || !strings.Contains(v.Hypervisor.AccelReason, "PVM")) {
		t.Errorf("on a PVM host env should resolve tcg because of PVM: %q (%q)", v.Hypervisor.Accel, v.Hypervisor.AccelReason)
	}
	if v.Hypervisor.QEMUVersion == "" || v.Host.Kernel == "" || v.Host.Cgroups.Mode == "" {
		t.Errorf("versions missing: qemu %q, host kernel %q, cgroups %q", v.Hypervisor.QEMUVersion, v.Host.Kernel, v.Host.Cgroups.Mode)
	}

	const kernel = "/nonexistent/vmlinux"
	cfg := e.checkConfigFile("[hypervisor]\nkernel = \"" + kernel + "\"\naccel = \"tcg\"\n")
	v = e.envJSON("--config", cfg)
	if v.Guest.Kernel != kernel || v.Config.File != cfg {
		t.Errorf("env with %s: kernel %q, config file %q", cfg, v.Guest.Kernel, v.Config.File)
	}
	if v.Hypervisor.AccelConfigured != "tcg" || v.Hypervisor.Accel != "tcg" {
		t.Errorf("env with accel = tcg: configured %q, resolved %q", v.Hypervisor.AccelConfigured, v.Hypervisor.Accel)
	}
}

func TestEnvText(t *testing.T) {
	skiffOnly(t)
	t.Parallel()
	e := newEnv(t)
	r := e.mustOK(e.rt("env"))
	for _, want := range []string{"[skiff]", "[hypervisor]", "[guest]", "kernel = ", "accel = ", "qemu_version = "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("env output lacks %q:\n%s", want, r.stdout)
		}
	}
}
