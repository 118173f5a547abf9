package hypervisor

import (
	"context"
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
	initrd := buildInitramfs(t, "i=0; while true; do echo TICK$i; i=$((i+1)); sleep 0.2; done\n")
	dir := t.TempDir()
	mem, state := filepath.Join(dir, "memory"), filepath.Join(dir, "state")

	tcfg := vmConfig(t, kernel, initrd)
	tcfg.MemoryFile, tcfg.MemoryShared = mem, true
	tmpl := startVM(t, tcfg)
	waitConsole(t, tcfg, "TICK3", 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
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
