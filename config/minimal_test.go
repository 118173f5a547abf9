package config

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

func TestFindMinimal(t *testing.T) {
	empty, d := t.TempDir(), t.TempDir()
	touch := func(name string, age time.Duration) {
		p := filepath.Join(d, name)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		when := time.Now().Add(-age)
		if err := os.Chtimes(p, when, when); err != nil {
			t.Fatal(err)
		}
	}
	if k, i := findMinimal([]string{empty, d}); k != "" || i != "" {
		t.Errorf("nothing built: %q %q", k, i)
	}
	touch(MinimalKernel, time.Hour)
	if k, _ := findMinimal([]string{d}); k != "" {
		t.Errorf("kernel without its initrd was chosen: %q", k)
	}
	touch("initramfs.img", time.Hour)
	touch(MinimalInitrd, time.Minute)
	k, i := findMinimal([]string{empty, d})
	if k != filepath.Join(d, MinimalKernel) || i != filepath.Join(d, MinimalInitrd) {
		t.Errorf("got %q %q", k, i)
	}
	// initramfs.img rebuilt (a new agent) after initramfs-minimal.img.
	touch("initramfs.img", 0)
	if k, _ := findMinimal([]string{d}); k != "" {
		t.Errorf("a stale initramfs-minimal.img was chosen")
	}
}

func TestMachineFollowsKernel(t *testing.T) {
	c := Default()
	c.Hypervisor.Kernel = "/x/" + MinimalKernel
	c.Hypervisor.Initrd = "/x/i"
	c.resolveGuest()
	want := ""
	if runtime.GOARCH == "amd64" {
		want = MinimalMachine
	}
	if c.Hypervisor.MachineType != want {
		t.Errorf("machine = %q, want %q", c.Hypervisor.MachineType, want)
	}
	c = Default()
	c.Hypervisor.Kernel, c.Hypervisor.Initrd, c.Hypervisor.MachineType = "/x/"+MinimalKernel, "/x/i", "q35"
	c.resolveGuest()
	if c.Hypervisor.MachineType != "q35" {
		t.Errorf("configured machine overridden: %q", c.Hypervisor.MachineType)
	}
	c = Default()
	c.Hypervisor.Kernel, c.Hypervisor.Initrd = "/x/vmlinux", "/x/i"
	c.resolveGuest()
	if c.Hypervisor.MachineType != "" {
		t.Errorf("stock kernel got machine %q", c.Hypervisor.MachineType)
	}
}
