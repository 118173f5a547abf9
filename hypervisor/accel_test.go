package hypervisor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// On this project's machines /dev/kvm is a PVM host: auto must pick TCG at
// once, without booting a probe, and say why.
func TestResolveAccelPVMHost(t *testing.T) {
	if _, err := os.Stat(pvmModule); err != nil {
		t.Skipf("not a PVM host: %v", err)
	}
	if _, err := os.Stat("/dev/kvm"); err != nil {
		// kvm_pvm loaded but no device node (a container without
		// /dev/kvm): "cannot open /dev/kvm" is the reason then.
		t.Skipf("PVM host without /dev/kvm here: %v", err)
	}
	bin, kernel, initrd := fakeFiles(t)
	start := time.Now()
	a, why, err := ResolveAccel(context.Background(), AccelAuto,
		ProbeConfig{Binary: bin, Kernel: kernel, Initrd: initrd}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if a != AccelTCG || !strings.Contains(why, "PVM") {
		t.Fatalf("auto = %s, %q; want tcg because of PVM", a, why)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("auto took %v", d)
	}
	t.Logf("auto: %s (%s)", a, why)
}

func TestResolveAccelExplicit(t *testing.T) {
	a, why, err := ResolveAccel(context.Background(), AccelTCG, ProbeConfig{}, "")
	if err != nil || a != AccelTCG || why == "" {
		t.Fatalf("tcg = %s, %q, %v", a, why, err)
	}
	if _, _, err := ResolveAccel(context.Background(), "xen", ProbeConfig{}, ""); err == nil {
		t.Fatal("unknown accel accepted")
	}

	old := kvmDevice
	defer func() { kvmDevice = old }()
	kvmDevice = filepath.Join(t.TempDir(), "kvm")
	if _, _, err := ResolveAccel(context.Background(), AccelKVM, ProbeConfig{}, ""); err == nil || !strings.Contains(err.Error(), kvmDevice) {
		t.Fatalf("kvm without device: error = %v", err)
	}
	a, why, err = ResolveAccel(context.Background(), AccelAuto, ProbeConfig{}, "")
	if err != nil || a != AccelTCG || !strings.Contains(why, kvmDevice) {
		t.Fatalf("auto without device = %s, %q, %v", a, why, err)
	}
}

func TestAccelCache(t *testing.T) {
	bin, kernel, initrd := fakeFiles(t)
	dir := filepath.Join(t.TempDir(), "cache")
	p := ProbeConfig{Binary: bin, Kernel: kernel, Initrd: initrd}
	key, err := newCacheKey(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := readAccelCache(dir, key); ok {
		t.Fatal("hit in an empty cache")
	}
	if err := writeAccelCache(dir, accelCache{Key: key, Accel: AccelKVM, Reason: "proven"}); err != nil {
		t.Fatal(err)
	}
	if c, ok := readAccelCache(dir, key); !ok || c.Accel != AccelKVM {
		t.Fatalf("cache = %+v, %v", c, ok)
	}

	// A new kernel invalidates the verdict.
	later := time.Now().Add(time.Hour)
	os.Chtimes(kernel, later, later)
	key2, _ := newCacheKey(p)
	if _, ok := readAccelCache(dir, key2); ok {
		t.Fatal("cache hit after the kernel changed")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("cache dir holds %d files, want 1 (no temp files left)", len(ents))
	}
}

// Auto on a host that is not PVM reads a cached verdict instead of probing.
func TestResolveAccelUsesCache(t *testing.T) {
	oldKVM, oldPVM := kvmDevice, pvmModule
	defer func() { kvmDevice, pvmModule = oldKVM, oldPVM }()
	kvmDevice = filepath.Join(t.TempDir(), "kvm")
	os.WriteFile(kvmDevice, nil, 0o600)
	pvmModule = filepath.Join(t.TempDir(), "absent")

	bin, kernel, initrd := fakeFiles(t)
	dir := t.TempDir()
	p := ProbeConfig{Binary: bin, Kernel: kernel, Initrd: initrd}
	key, _ := newCacheKey(p)
	writeAccelCache(dir, accelCache{Key: key, Accel: AccelKVM, Reason: "KVM runs the guest"})
	a, why, err := ResolveAccel(context.Background(), AccelAuto, p, dir)
	if err != nil || a != AccelKVM || !strings.Contains(why, "cached") {
		t.Fatalf("auto = %s, %q, %v; want the cached kvm", a, why, err)
	}
}
