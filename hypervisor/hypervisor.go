// Package hypervisor starts, watches and stops the virtual machines that
// hold sandboxes. The Hypervisor interface is deliberately narrow: the
// sandbox package decides what goes into a VM, this package only knows how
// to express it to a VMM. It must not know about containers, OCI specs or
// the on-disk state format.
package hypervisor

import (
	"context"
	"time"
)

// Accel names an accelerator.
type Accel string

const (
	AccelKVM  Accel = "kvm"
	AccelTCG  Accel = "tcg"
	AccelAuto Accel = "auto"
)

// Share is a host directory exported to the guest as a shared filesystem
// device with a mount tag.
type Share struct {
	Tag      string
	HostPath string
	ReadOnly bool
}

// Config is everything needed to boot one VM. Paths of sockets and logs are
// chosen by the caller (they live in the sandbox's state directory).
type Config struct {
	// Name identifies the VM in process listings (qemu -name).
	Name string
	// Binary is the VMM executable (e.g. /usr/bin/qemu-system-x86_64).
	Binary string
	Kernel string
	Initrd string
	// KernelParams are appended to the backend's default command line.
	KernelParams []string
	// Machine is the machine type; empty means the architecture's default.
	Machine string
	// Accel must be resolved (kvm or tcg) before Start; see ResolveAccel.
	Accel     Accel
	VCPUs     int
	MemoryMiB int
	Shares    []Share
	// SharedFS is how the shares reach the guest: 9p (the default, "")
	// or virtio-fs (virtiofs.go), which needs MemoryFile empty.
	SharedFS FS
	// MemoryFile backs guest RAM with a file, for VM templates:
	// MemoryShared maps it shared (a template writes its RAM there);
	// otherwise it is mapped privately (a clone copies pages it writes).
	MemoryFile   string
	MemoryShared bool
	// Incoming starts the VM waiting for a saved state (RestoreTemplate)
	// instead of booting.
	Incoming bool

	// NetDevices are virtio-net NICs on taps the caller opened.
	NetDevices []NetDevice
	// Disks are virtio-blk disks backed by image files.
	Disks []Disk

	// AgentSocket is a unix socket the VMM listens on; the guest sees it as
	// the virtio-serial port protocol.PortName.
	AgentSocket string
	// QMPSocket is the VMM's control socket (the VMM listens on it).
	QMPSocket string
	// ConsoleLog receives the guest's serial console.
	ConsoleLog string
	// StderrLog receives the VMM's own stdout and stderr.
	StderrLog string
	// PIDFile is written by the VMM with its PID.
	PIDFile string
	// GuardSocket makes a VM that outlives the process that starts it: a
	// pooled VM. It waits, its guard listening on this socket, until a
	// process adopts it (AdoptQEMU), and from then dies with that process.
	// Empty: the VM dies with the process that started it.
	GuardSocket string
}

// Hypervisor is one VM.
type Hypervisor interface {
	// Start launches the VM detached from the caller's session and returns
	// once the VMM process runs. It does not wait for the guest. The VM
	// dies with the calling process (unless Config.GuardSocket is set).
	Start(ctx context.Context) error
	// PID of the VMM process, 0 before Start. In a process that did not
	// start the VM it is the PID in Config.PIDFile while that QEMU runs.
	PID() int
	// Wait waits for the VMM process to exit. Only the process that called
	// Start can wait.
	Wait() error
	// Stop asks the VMM to quit (QMP), and kills it after timeout.
	Stop(ctx context.Context, timeout time.Duration) error
}
