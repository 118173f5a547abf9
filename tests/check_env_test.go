package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-oci/skiff/tests/internal/e2e"
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
	"guest initramfs", "guest image", "vhost-vsock", "confinement", "shared filesystem", "cgroups",
	"networking", "scratch disk",
}

// checkPVMHost is whether this host's /dev/kvm belongs to PVM, as on the
// project's own machines: kvm_pvm loaded and /dev/kvm there (a machine
// without the device node reports that instead).
func checkPVMHost() bool {
	_, err := os.Stat("/sys/module/kvm_pvm")
	_, dev := os.Stat("/dev/kvm")
	return err == nil && dev == nil
}

func checkJSON(e *e2e.Env, args ...string) (e2e.Result, []checkResult) {
	e.T.Helper()
	r := e.RT(append(args, "check", "--json")...)
	var rs []checkResult
	if err := json.Unmarshal([]byte(r.Stdout), &rs); err != nil {
		e.T.Fatalf("check --json printed invalid JSON: %v\n%v", err, r)
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
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	start := time.Now()
	r := e.RT("check")
	// It must end, not be fast: each QEMU it asks is bounded by 15 s,
	// and a loaded CI machine took 11 s once (speed is make bench's).
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("check took %v: does something in it hang?", took)
	}
	e.MustOK(r)
	if !strings.HasPrefix(r.Stdout, "STATUS") || !strings.Contains(strings.SplitN(r.Stdout, "\n", 2)[0], "DETAIL") {
		t.Errorf("check table has no STATUS ... DETAIL header:\n%s", r.Stdout)
	}
	lines := checkLines(t, r.Stdout)
	for _, name := range checkNames {
		if lines[name] == "" {
			t.Errorf("check printed no line for %q:\n%s", name, r.Stdout)
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
	ls := strings.Split(r.Stdout, "\n")
	for i, l := range ls {
		if (strings.HasPrefix(l, "warn") || strings.HasPrefix(l, "fail")) && (i+1 >= len(ls) || !strings.HasPrefix(strings.TrimSpace(ls[i+1]), "fix: ")) {
			t.Errorf("no fix under %q", l)
		}
	}
	ents, _ := os.ReadDir(e.Root)
	for _, ent := range ents {
		if strings.HasPrefix(ent.Name(), ".skiff-check") {
			t.Errorf("check left %s in the state root", ent.Name())
		}
	}
}

func TestCheckJSON(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	r, rs := checkJSON(e)
	e.MustOK(r)
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
	strict := e.RT("check", "--strict")
	if warned && strict.Code == 0 {
		t.Errorf("check --strict exited 0 with warnings: %v", strict)
	}
	if !warned && strict.Code != 0 {
		t.Errorf("check --strict failed without warnings: %v", strict)
	}
}

func TestCheckMissingKernel(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	const kernel = "/nonexistent/vmlinux"
	cfg := e.WriteFile("config.toml", "[hypervisor]\nkernel = \""+kernel+"\"\n")

	r := e.RT("--config", cfg, "check")
	if r.Code == 0 {
		t.Errorf("check with a missing kernel exited 0: %v", r)
	}
	line := checkLines(t, r.Stdout)["guest kernel"]
	if !strings.HasPrefix(line, "fail") || !strings.Contains(line, kernel) {
		t.Errorf("guest kernel line should fail naming %s: %q\n%s", kernel, line, r.Stdout)
	}
	if !strings.Contains(r.Stdout, "fix: ") {
		t.Errorf("no fix printed:\n%s", r.Stdout)
	}

	r, rs := checkJSON(e, "--config", cfg)
	if r.Code == 0 {
		t.Errorf("check --json with a missing kernel exited 0")
	}
	for _, c := range rs {
		if c.Name == "guest kernel" && (c.Status != "fail" || !strings.Contains(c.Detail, kernel)) {
			t.Errorf("guest kernel entry %+v, want a failure naming %s", c, kernel)
		}
	}
}

func TestCheckBadConfig(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	cfg := e.WriteFile("config.toml", "[hypervisor]\nno_such_key = 1\n")
	r := e.RT("--config", cfg, "check")
	line := checkLines(t, r.Stdout)["config"]
	if r.Code == 0 || !strings.HasPrefix(line, "fail") || !strings.Contains(line, "no_such_key") {
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

func envJSON(e *e2e.Env, args ...string) envOutput {
	e.T.Helper()
	r := e.MustOK(e.RT(append(args, "env", "--json")...))
	var v envOutput
	if err := json.Unmarshal([]byte(r.Stdout), &v); err != nil {
		e.T.Fatalf("env --json printed invalid JSON: %v\n%s", err, r.Stdout)
	}
	return v
}

func TestEnvJSON(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	v := envJSON(e)
	if v.Skiff.Version == "" || v.Skiff.AgentProtocol < 1 || v.Skiff.StateRoot != e.Root {
		t.Errorf("skiff section %+v: want a version, a protocol and state root %s", v.Skiff, e.Root)
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
	cfg := e.WriteFile("config.toml", "[hypervisor]\nkernel = \""+kernel+"\"\naccel = \"tcg\"\n")
	v = envJSON(e, "--config", cfg)
	if v.Guest.Kernel != kernel || v.Config.File != cfg {
		t.Errorf("env with %s: kernel %q, config file %q", cfg, v.Guest.Kernel, v.Config.File)
	}
	if v.Hypervisor.AccelConfigured != "tcg" || v.Hypervisor.Accel != "tcg" {
		t.Errorf("env with accel = tcg: configured %q, resolved %q", v.Hypervisor.AccelConfigured, v.Hypervisor.Accel)
	}
}

func TestEnvText(t *testing.T) {
	e2e.SkiffOnly(t)
	e := e2e.NewEnv(t)
	r := e.MustOK(e.RT("env"))
	for _, want := range []string{"[skiff]", "[hypervisor]", "[guest]", "kernel = ", "accel = ", "qemu_version = "} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("env output lacks %q:\n%s", want, r.Stdout)
		}
	}
}
