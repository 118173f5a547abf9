package hypervisor

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A template saved and a clone restored from it by a real QEMU running
// under its seccomp filter: the state goes through descriptors skiff opens
// (QMP getfd), since QEMU may not spawn the shell an exec: URI needs.
func TestTemplateSaveRestoreUnderSeccomp(t *testing.T) {
	t.Parallel()
	kernel := testKernel(t)
	initrd := buildInitramfs(t, "mkdir -p /sys; mount -t sysfs sys /sys; echo VMGENID $(ls /sys/bus/acpi/drivers/vmgenid)\n"+
		"i=0; while true; do echo TICK$i; i=$((i+1)); sleep 0.2; done\n")
	dir := t.TempDir()
	mem, state := filepath.Join(dir, "memory"), filepath.Join(dir, "state")

	tcfg := vmConfig(t, kernel, initrd)
	tcfg.MemoryFile, tcfg.MemoryShared = mem, true
	tmpl := startVM(t, tcfg)
	waitConsole(t, tcfg, "TICK3", 60*time.Second)
	// The guest kernel drives QEMU's vmgenid device: it will hear of the
	// new generation ID each clone has.
	if !consoleHas(tcfg.ConsoleLog, "VMGENID QEMUVGID") {
		b, _ := os.ReadFile(tcfg.ConsoleLog)
		t.Errorf("the guest has no vmgenid device bound to its driver; console:\n%s", b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	templateGen := generationID(t, tcfg)
	if err := tmpl.(Templater).SaveTemplate(ctx, state); err != nil {
		t.Fatalf("save: %v", err)
	}
	tmpl.Stop(context.Background(), time.Second)

	ccfg := vmConfig(t, kernel, initrd)
	ccfg.MemoryFile, ccfg.Incoming = mem, true
	clone := startVM(t, ccfg)
	if err := clone.(Templater).RestoreTemplate(ctx, state); err != nil {
		t.Fatalf("restore: %v", err)
	}
	// The clone's console is its own: any tick on it was printed after
	// the restore.
	waitConsole(t, ccfg, "TICK", 30*time.Second)
	if g := generationID(t, ccfg); g == templateGen {
		t.Errorf("the clone has its template's VM generation ID %s", g)
	}
}

// generationID is the VM generation ID QEMU gives the guest.
func generationID(t *testing.T, cfg Config) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := DialQMP(ctx, cfg.QMPSocket)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	r, err := m.Execute(ctx, "query-vm-generation-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		GUID string `json:"guid"`
	}
	if err := json.Unmarshal(r, &g); err != nil || g.GUID == "" {
		t.Fatalf("query-vm-generation-id: %s, %v", r, err)
	}
	return g.GUID
}

// startVM starts a VM of cfg, stopped when the test ends.
func startVM(t *testing.T, cfg Config) Hypervisor {
	t.Helper()
	h, err := NewQEMU(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Stop(context.Background(), time.Second) })
	return h
}
