package protocol

import specs "github.com/opencontainers/runtime-spec/specs-go"

// Methods for a running container's resources: its limits in the guest's
// cgroup, and what it uses. The VM itself keeps its size.
const (
	MethodUpdateResources = "UpdateResources"
	MethodStats           = "Stats"
)

// UpdateResourcesRequest changes the limits of a container's guest cgroup.
// Only the fields set change. A memory limit or pids limit of -1 means
// unlimited, as for runc update.
type UpdateResourcesRequest struct {
	ID        string                `json:"id"`
	Resources *specs.LinuxResources `json:"resources"`
}

// StatsRequest asks for a container's usage, read from its guest cgroup.
type StatsRequest struct {
	ID string `json:"id"`
}

// Stats is a container's usage in the shape of runc's events "data"
// object, so that the host prints it unchanged. CPU times are in
// nanoseconds, sizes in bytes.
type Stats struct {
	CPU    CPUStats    `json:"cpu"`
	Memory MemoryStats `json:"memory"`
	Pids   PidsStats   `json:"pids"`
	Blkio  BlkioStats  `json:"blkio"`
}

// CPUStats is cpu.stat (and cpu.max's throttling counters).
type CPUStats struct {
	Usage      CPUUsage   `json:"usage"`
	Throttling Throttling `json:"throttling"`
}

// CPUUsage is the cgroup's CPU time. The guest's cgroup v2 has no per-CPU
// breakdown.
type CPUUsage struct {
	Total  uint64 `json:"total"`
	Kernel uint64 `json:"kernel"`
	User   uint64 `json:"user"`
}

// Throttling counts CPU quota periods.
type Throttling struct {
	Periods          uint64 `json:"periods,omitempty"`
	ThrottledPeriods uint64 `json:"throttledPeriods,omitempty"`
	ThrottledTime    uint64 `json:"throttledTime,omitempty"`
}

// MemoryStats is memory.current, memory.max, memory.peak, memory.swap.*
// and memory.stat (Raw).
type MemoryStats struct {
	Cache uint64            `json:"cache,omitempty"`
	Usage MemoryEntry       `json:"usage"`
	Swap  MemoryEntry       `json:"swap"`
	Raw   map[string]uint64 `json:"raw,omitempty"`
}

// MemoryEntry is one memory counter with its limit (0: unlimited).
type MemoryEntry struct {
	Limit   uint64 `json:"limit"`
	Usage   uint64 `json:"usage,omitempty"`
	Max     uint64 `json:"max,omitempty"`
	Failcnt uint64 `json:"failcnt"`
}

// PidsStats is pids.current and pids.max (0: unlimited).
type PidsStats struct {
	Current uint64 `json:"current,omitempty"`
	Limit   uint64 `json:"limit,omitempty"`
}

// BlkioStats is io.stat, per device.
type BlkioStats struct {
	IoServiceBytesRecursive []BlkioEntry `json:"ioServiceBytesRecursive,omitempty"`
	IoServicedRecursive     []BlkioEntry `json:"ioServicedRecursive,omitempty"`
}

// BlkioEntry is one counter of one device; Op is Read, Write or Discard.
type BlkioEntry struct {
	Major uint64 `json:"major"`
	Minor uint64 `json:"minor"`
	Op    string `json:"op"`
	Value uint64 `json:"value"`
}
