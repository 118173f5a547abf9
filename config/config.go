// Package config loads skiff's TOML configuration and fills in defaults.
// It resolves what can be resolved without side effects (paths of the guest
// image beside the binary); it must not start processes or probe hardware.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/skiff-oci/skiff/internal/userns"

	"github.com/BurntSushi/toml"
)

// DefaultPath is read when --config is not given and the file exists.
const DefaultPath = "/etc/skiff/config.toml"

// Config is the whole configuration. Field tags are the TOML keys; every
// key is documented in config.toml.example.
type Config struct {
	Hypervisor Hypervisor `toml:"hypervisor"`
	Runtime    Runtime    `toml:"runtime"`
	Factory    Factory    `toml:"factory"`
	Storage    Storage    `toml:"storage"`

	// Source is the file the configuration came from, "" for defaults.
	Source string `toml:"-"`
}

// Hypervisor configures the VMs.
type Hypervisor struct {
	Path          string `toml:"path"`
	Kernel        string `toml:"kernel"`
	Initrd        string `toml:"initrd"`
	KernelParams  string `toml:"kernel_params"`
	Accel         string `toml:"accel"`
	MachineType   string `toml:"machine_type"`
	DefaultVCPUs  int    `toml:"default_vcpus"`
	DefaultMemory int    `toml:"default_memory"`
	// BootTimeout is in seconds.
	BootTimeout int `toml:"boot_timeout"`
	// MemoryOverhead (MiB) is added to a container's memory limit to size
	// its VM; MaxMemory (MiB) and MaxVCPUs (0: the host's CPUs) bound it.
	MemoryOverhead int `toml:"memory_overhead"`
	MaxMemory      int `toml:"max_memory"`
	MaxVCPUs       int `toml:"max_vcpus"`
}

// Factory configures VM templates.
type Factory struct {
	// Template restores sandboxes from a saved, booted guest instead of
	// booting each one.
	Template bool `toml:"template"`
	// Dir holds the templates, shared by every state root.
	Dir string `toml:"dir"`
	// Cache is how many sandboxes of the default size wait, restored from
	// the template and connected, for create to take (0: no pool).
	Cache int `toml:"cache"`
	// CacheAuto sizes the pool from the recent start rate, with Cache
	// its bound.
	CacheAuto bool `toml:"cache_auto"`
}

// Storage configures where containers' files live.
type Storage struct {
	// ScratchSize is the size of a sandbox's scratch disk (a sparse file
	// on the host): "10G"; the annotation io.skiff.scratch.size
	// overrides it per sandbox.
	ScratchSize string `toml:"scratch_size"`
	// ScratchPaths are container paths that are always scratch, for
	// every container, beside those of the annotation io.skiff.scratch.
	ScratchPaths []string `toml:"scratch_paths"`
	// RootfsDisk gives a sandbox's VM a rootfs that is a block device's
	// whole filesystem (devmapper, a loop mount) as a disk, taking the
	// host's mount of it over; false shares it like any directory.
	RootfsDisk bool `toml:"rootfs_disk"`
}

// Runtime configures the host side.
type Runtime struct {
	SharedFS string `toml:"shared_fs"`
	LogLevel string `toml:"log_level"`
	// GuestDebug makes the agent log verbosely to the guest console.
	GuestDebug bool `toml:"guest_debug"`
	// NetworkModel connects the VM to the spec's network namespace:
	// "tcfilter" (taps mirrored with tc) or "none".
	NetworkModel string `toml:"network_model"`
	// DebugConsole allows `skiff debug-console`: a root shell in a
	// sandbox's guest, outside its containers. Off by default.
	DebugConsole bool `toml:"debug_console"`
}

// Default returns the built-in configuration.
func Default() *Config {
	return &Config{
		Hypervisor: Hypervisor{
			Accel:          "auto",
			DefaultVCPUs:   1,
			DefaultMemory:  512,
			BootTimeout:    30,
			MemoryOverhead: 256,
			MaxMemory:      16384,
		},
		Factory: Factory{Template: true, Dir: userns.RuntimeDir("skiff-factory", "/run/skiff-factory")},
		Storage: Storage{ScratchSize: "10G", RootfsDisk: true},
		Runtime: Runtime{
			SharedFS:     "auto",
			LogLevel:     "info",
			NetworkModel: "tcfilter",
		},
	}
}

// Load reads path, or DefaultPath when path is "" and that file exists,
// over the defaults, validates the result and resolves guest image paths.
func Load(path string) (*Config, error) {
	c := Default()
	explicit := path != ""
	if !explicit {
		path = DefaultPath
	}
	md, err := toml.DecodeFile(path, c)
	switch {
	case err == nil:
		c.Source = path
		if undec := md.Undecoded(); len(undec) > 0 {
			keys := make([]string, len(undec))
			for i, k := range undec {
				keys[i] = k.String()
			}
			return nil, fmt.Errorf("config %s: unknown keys: %s", path, strings.Join(keys, ", "))
		}
	case errors.Is(err, os.ErrNotExist) && !explicit:
		// No system-wide file: built-in defaults.
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("config %s: file does not exist", path)
	default:
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if err := c.validate(); err != nil {
		if c.Source != "" {
			return nil, fmt.Errorf("config %s: %w", c.Source, err)
		}
		return nil, err
	}
	c.resolveGuest()
	return c, nil
}

// MaxCache bounds factory.cache: each waiting sandbox holds a VM (~60-100
// MiB of host memory), and a typo must not start hundreds.
const MaxCache = 64

func (c *Config) validate() error {
	h := &c.Hypervisor
	switch h.Accel {
	case "auto", "kvm", "tcg":
	default:
		return fmt.Errorf("hypervisor.accel = %q: must be auto, kvm or tcg", h.Accel)
	}
	if h.DefaultVCPUs < 1 || h.DefaultVCPUs > 256 {
		return fmt.Errorf("hypervisor.default_vcpus = %d: must be between 1 and 256", h.DefaultVCPUs)
	}
	if h.DefaultMemory < 64 {
		return fmt.Errorf("hypervisor.default_memory = %d: must be at least 64 (MiB)", h.DefaultMemory)
	}
	if h.MemoryOverhead < 0 {
		return fmt.Errorf("hypervisor.memory_overhead = %d: must not be negative", h.MemoryOverhead)
	}
	if h.MaxMemory < h.DefaultMemory {
		return fmt.Errorf("hypervisor.max_memory = %d: must be at least default_memory (%d)", h.MaxMemory, h.DefaultMemory)
	}
	if h.MaxVCPUs < 0 {
		return fmt.Errorf("hypervisor.max_vcpus = %d: must not be negative (0: the host's CPUs)", h.MaxVCPUs)
	}
	if h.BootTimeout < 1 {
		return fmt.Errorf("hypervisor.boot_timeout = %d: must be at least 1 (seconds)", h.BootTimeout)
	}
	if !filepath.IsAbs(c.Factory.Dir) {
		return fmt.Errorf("factory.dir = %q: must be an absolute path", c.Factory.Dir)
	}
	if c.Factory.Cache < 0 || c.Factory.Cache > MaxCache {
		return fmt.Errorf("factory.cache = %d: must be between 0 and %d", c.Factory.Cache, MaxCache)
	}
	if c.Factory.CacheAuto && c.Factory.Cache == 0 {
		return fmt.Errorf("factory.cache_auto = true needs factory.cache, the pool's bound, above 0")
	}
	if c.Factory.Cache > 0 && !c.Factory.Template {
		return fmt.Errorf("factory.cache = %d needs factory.template = true: pooled sandboxes are restored from the template", c.Factory.Cache)
	}
	if _, err := ScratchBytes(c.Storage.ScratchSize); err != nil {
		return fmt.Errorf("storage.scratch_size: %w", err)
	}
	for _, p := range c.Storage.ScratchPaths {
		if !filepath.IsAbs(p) || filepath.Clean(p) == "/" {
			return fmt.Errorf("storage.scratch_paths: %q must be an absolute container path other than /", p)
		}
	}
	switch c.Runtime.SharedFS {
	case "auto", "virtio-fs", "9p":
	case "virtio-9p":
		c.Runtime.SharedFS = "9p" // its name before virtio-fs came
	default:
		return fmt.Errorf("runtime.shared_fs = %q: must be auto, virtio-fs or 9p", c.Runtime.SharedFS)
	}
	switch c.Runtime.NetworkModel {
	case "tcfilter", "none":
	default:
		return fmt.Errorf("runtime.network_model = %q: must be tcfilter or none", c.Runtime.NetworkModel)
	}
	switch c.Runtime.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("runtime.log_level = %q: must be debug, info, warn or error", c.Runtime.LogLevel)
	}
	return nil
}

// BootTimeout as a duration.
func (h *Hypervisor) BootTimeoutDuration() time.Duration {
	return time.Duration(h.BootTimeout) * time.Second
}

// GuestDirs are searched, in order, for the guest image when the kernel or
// initrd is not configured: beside a binary run from the checkout
// (bin/skiff → build/guest), then an installed layout.
func GuestDirs() []string {
	var dirs []string
	if exe, err := os.Executable(); err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			d := filepath.Dir(exe)
			dirs = append(dirs, filepath.Join(d, "..", "build", "guest"), filepath.Join(d, "..", "share", "skiff"))
		}
	}
	return append(dirs, "/usr/local/share/skiff", "/usr/share/skiff")
}

// resolveGuest fills empty kernel, initrd and hypervisor paths. A path that
// cannot be found stays as the first candidate so that the error names it.
func (c *Config) resolveGuest() {
	h := &c.Hypervisor
	if h.Kernel == "" && h.Initrd == "" {
		h.Kernel, h.Initrd = findMinimal(GuestDirs())
	}
	if h.Kernel == "" {
		h.Kernel = findIn(GuestDirs(), "vmlinux")
	}
	if h.Initrd == "" {
		h.Initrd = findIn(GuestDirs(), "initramfs.img")
	}
	if h.Path == "" {
		h.Path = defaultQEMU()
	}
	if h.MachineType == "" && filepath.Base(h.Kernel) == MinimalKernel && runtime.GOARCH == "amd64" {
		h.MachineType = MinimalMachine
	}
}

// The minimal guest kernel (`make kernel`: guest/build-kernel.sh) and its
// modules-free initramfs. When both are beside the stock image and the
// configuration names no kernel or initrd, they are the default; the
// machine follows the kernel by its file name: vmlinux-minimal boots on
// MinimalMachine unless machine_type says otherwise.
const (
	MinimalKernel = "vmlinux-minimal"
	MinimalInitrd = "initramfs-minimal.img"
	// MinimalMachine: no ACPI (the kernel has none); the legacy PIC, PIT
	// and RTC stay on, since under TCG microvm hangs without the first two
	// and loses a second reading the clock without the third.
	MinimalMachine = "microvm,acpi=off,pic=on,pit=on,rtc=on"
)

// findMinimal returns the minimal kernel and initrd of the first of dirs
// holding both, or "", "". An initramfs-minimal.img older than the
// initramfs.img beside it was made from an older agent (make guest
// refreshes it; guest/build.sh alone does not): the stock image is used
// rather than an agent that may not speak this skiff's protocol.
func findMinimal(dirs []string) (kernel, initrd string) {
	for _, d := range dirs {
		k, i := filepath.Join(d, MinimalKernel), filepath.Join(d, MinimalInitrd)
		ki, err1 := os.Stat(k)
		ii, err2 := os.Stat(i)
		if err1 != nil || err2 != nil || !ki.Mode().IsRegular() || !ii.Mode().IsRegular() {
			continue
		}
		if base, err := os.Stat(filepath.Join(d, "initramfs.img")); err == nil && base.ModTime().After(ii.ModTime()) {
			return "", ""
		}
		return filepath.Clean(k), filepath.Clean(i)
	}
	return "", ""
}

func findIn(dirs []string, name string) string {
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return filepath.Clean(p)
		}
	}
	return filepath.Clean(filepath.Join(dirs[0], name))
}

func defaultQEMU() string {
	name := map[string]string{
		"amd64":   "qemu-system-x86_64",
		"arm64":   "qemu-system-aarch64",
		"ppc64le": "qemu-system-ppc64",
		"s390x":   "qemu-system-s390x",
	}[runtime.GOARCH]
	if name == "" {
		name = "qemu-system-" + runtime.GOARCH
	}
	for _, d := range []string{"/usr/bin", "/usr/local/bin"} {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return filepath.Join("/usr/bin", name)
}
