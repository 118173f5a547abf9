package state

import "path/filepath"

// ContainerDir is the state directory of one container: its record, its
// lock, and the markers its shim leaves.
type ContainerDir string

func (d ContainerDir) path(name string) string { return filepath.Join(string(d), name) }

// ID is the container's ID.
func (d ContainerDir) ID() string { return filepath.Base(string(d)) }

// RecordFile is state.json.
func (d ContainerDir) RecordFile() string { return d.path("state.json") }

// StartedMarker is created by the shim once the container's process was
// released: the shim, not a verb that might die half-way, knows it ran.
func (d ContainerDir) StartedMarker() string { return d.path("started") }

// PausedMarker is created by the shim once the container's processes are
// frozen, and removed once they are thawed.
func (d ContainerDir) PausedMarker() string { return d.path("paused") }

// ExitedMarker is created by the shim once the container's process has
// exited, before it stops the VM: the container is stopped from then on,
// as runc's is once its process is gone, though its host process still
// lives for the VM's teardown.
func (d ContainerDir) ExitedMarker() string { return d.path("exited") }

// SandboxDir is the directory of one sandbox: its record, and everything
// of its VM the host holds (sockets, logs, the shares' bind mounts, the
// network record, the link to a pooled VM).
type SandboxDir string

func (d SandboxDir) path(name string) string { return filepath.Join(string(d), name) }

// ID is the sandbox's ID.
func (d SandboxDir) ID() string { return filepath.Base(string(d)) }

// Files of a sandbox.
func (d SandboxDir) RecordFile() string  { return d.path("sandbox.json") }
func (d SandboxDir) ShimSocket() string  { return d.path("shim.sock") }
func (d SandboxDir) ShimLog() string     { return d.path("shim.log") }
func (d SandboxDir) ShimPIDFile() string { return d.path("shim.pid") }
func (d SandboxDir) AgentSocket() string { return d.path("agent.sock") }
func (d SandboxDir) QMPSocket() string   { return d.path("qmp.sock") }
func (d SandboxDir) ConsoleLog() string  { return d.path("console.log") }
func (d SandboxDir) QEMULog() string     { return d.path("qemu.log") }
func (d SandboxDir) QEMUPIDFile() string { return d.path("qemu.pid") }

// ScratchImage is the sandbox's scratch disk, a sparse file (hostdisk).
func (d SandboxDir) ScratchImage() string { return d.path("scratch.img") }

// FilesDir and DirsDir hold the bind mounts of the files and directories
// the sandbox's containers bind-mount (hostfs).
func (d SandboxDir) FilesDir() string { return d.path("files") }
func (d SandboxDir) DirsDir() string  { return d.path("dirs") }
