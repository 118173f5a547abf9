package hostcheck

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"runtime"
	"strings"

	"github.com/skiff-oci/skiff/agentclient/protocol"
	"github.com/skiff-oci/skiff/config"
	"github.com/skiff-oci/skiff/hypervisor"
)

// Env is the configuration in force and the versions of everything
// involved, as `skiff env` prints it for bug reports. A value that could
// not be found is "" and its error goes in the matching *Error field.
type Env struct {
	Skiff      EnvSkiff      `json:"skiff" toml:"skiff"`
	Config     EnvConfig     `json:"config" toml:"config"`
	Hypervisor EnvHypervisor `json:"hypervisor" toml:"hypervisor"`
	Guest      EnvGuest      `json:"guest" toml:"guest"`
	Host       EnvHost       `json:"host" toml:"host"`
}

type EnvSkiff struct {
	Version string `json:"version" toml:"version"`
	Binary  string `json:"binary" toml:"binary"`
	// AgentProtocol is the agent protocol version this binary speaks.
	AgentProtocol int    `json:"agentProtocol" toml:"agent_protocol"`
	StateRoot     string `json:"stateRoot" toml:"state_root"`
}

type EnvConfig struct {
	// File is the configuration file read, or "built-in defaults".
	File     string `json:"file" toml:"file"`
	SharedFS string `json:"sharedFS" toml:"shared_fs"`
	LogLevel string `json:"logLevel" toml:"log_level"`
	// The factory: VM templates, and how many pooled VMs wait.
	Templates  bool   `json:"templates" toml:"templates"`
	FactoryDir string `json:"factoryDir" toml:"factory_dir"`
	PoolCache  int    `json:"poolCache" toml:"pool_cache"`
}

type EnvHypervisor struct {
	QEMU             string `json:"qemu" toml:"qemu"`
	QEMUVersion      string `json:"qemuVersion" toml:"qemu_version"`
	QEMUVersionError string `json:"qemuVersionError,omitempty" toml:"qemu_version_error,omitempty"`
	Machine          string `json:"machine" toml:"machine"`
	VCPUs            int    `json:"vcpus" toml:"vcpus"`
	MemoryMiB        int    `json:"memoryMiB" toml:"memory_mib"`
	BootTimeout      int    `json:"bootTimeoutSeconds" toml:"boot_timeout_seconds"`
	// AccelConfigured is the configured accelerator; Accel what it
	// resolves to on this host, and AccelReason why.
	AccelConfigured string `json:"accelConfigured" toml:"accel_configured"`
	Accel           string `json:"accel" toml:"accel"`
	AccelReason     string `json:"accelReason" toml:"accel_reason"`
	AccelError      string `json:"accelError,omitempty" toml:"accel_error,omitempty"`
}

type EnvGuest struct {
	Kernel       string `json:"kernel" toml:"kernel"`
	Initrd       string `json:"initrd" toml:"initrd"`
	KernelParams string `json:"kernelParams" toml:"kernel_params"`
	// GuestInfo is guest.json beside the kernel, "" if there is none.
	GuestInfo      string `json:"guestInfo" toml:"guest_info"`
	KernelVersion  string `json:"kernelVersion" toml:"kernel_version"`
	KernelPackage  string `json:"kernelPackage" toml:"kernel_package"`
	AgentSHA256    string `json:"agentSHA256" toml:"agent_sha256"`
	GuestInfoError string `json:"guestInfoError,omitempty" toml:"guest_info_error,omitempty"`
}

type EnvHost struct {
	Kernel  string  `json:"kernel" toml:"kernel"`
	Arch    string  `json:"arch" toml:"arch"`
	Cgroups Cgroups `json:"cgroups" toml:"cgroups"`
}

// Environment gathers the Env of configuration c with state root root;
// version is skiff's own. It resolves the accelerator as a sandbox would
// (a probe boot at most, its verdict cached in root).
func Environment(ctx context.Context, c *config.Config, root, version string) Env {
	h := c.Hypervisor
	var e Env

	e.Skiff.Version = version
	if exe, err := os.Executable(); err == nil {
		e.Skiff.Binary = exe
	}
	e.Skiff.AgentProtocol = protocol.Version
	e.Skiff.StateRoot = root

	e.Config.File = c.Source
	if e.Config.File == "" {
		e.Config.File = "built-in defaults"
	}
	e.Config.SharedFS = c.Runtime.SharedFS
	e.Config.LogLevel = c.Runtime.LogLevel
	e.Config.Templates, e.Config.FactoryDir, e.Config.PoolCache = c.Factory.Template, c.Factory.Dir, c.Factory.Cache

	hv := &e.Hypervisor
	hv.QEMU = h.Path
	if bin, err := findQEMU(h.Path); err != nil {
		hv.QEMUVersionError = err.Error()
	} else if hv.QEMUVersion, err = QEMUVersion(ctx, bin); err != nil {
		hv.QEMUVersionError = err.Error()
	}
	hv.Machine = h.MachineType
	if hv.Machine == "" {
		hv.Machine = DefaultMachine()
	}
	hv.VCPUs, hv.MemoryMiB, hv.BootTimeout = h.DefaultVCPUs, h.DefaultMemory, h.BootTimeout
	hv.AccelConfigured = h.Accel
	accel, why, err := resolveAccel(ctx, hypervisor.Accel(h.Accel), hypervisor.ProbeConfig{
		Binary: h.Path, Kernel: h.Kernel, Initrd: h.Initrd, Machine: h.MachineType,
	}, root)
	if err != nil {
		hv.AccelError = err.Error()
	} else {
		hv.Accel, hv.AccelReason = string(accel), why
	}

	g := &e.Guest
	g.Kernel, g.Initrd, g.KernelParams = h.Kernel, h.Initrd, h.KernelParams
	if gi, err := ReadGuestInfo(h.Kernel); err == nil {
		g.GuestInfo = GuestInfoPath(h.Kernel)
		g.KernelVersion = gi.KernelVersion
		g.KernelPackage = strings.TrimSpace(gi.KernelPackage + " " + gi.KernelPackageVersion)
		g.AgentSHA256 = gi.AgentSHA256
	} else if !errors.Is(err, fs.ErrNotExist) {
		g.GuestInfoError = err.Error()
	}

	if b, err := os.ReadFile(osRelease); err == nil {
		e.Host.Kernel = strings.TrimSpace(string(b))
	}
	e.Host.Arch = runtime.GOARCH
	if cg, err := ReadCgroups(); err == nil {
		e.Host.Cgroups = cg
	}
	return e
}
