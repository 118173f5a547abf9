package hostcgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The spec's limits hold twice: exactly, on the container's own cgroup in
// the guest (the agent's job), and on the sandbox's host cgroup, where the
// whole VM is the container. On the host they are written as runc writes
// them, with two exceptions the VM forces: the memory cap is the VM's size
// plus QEMU's margin (Join), and the pids cap is never below what the
// sandbox's own host processes need (hostPidsMin).

// hostPidsMin is the lowest pids.max the host cgroup gets: QEMU (a vCPU
// thread each, its RCU and main threads, a pool of up to 64 I/O workers
// for the shared filesystem), the VMM guard and the shim (Go processes of
// ~10 threads each) must be able to make their threads whatever the
// container's own limit, which the guest enforces exactly. Measured at
// rest: 19 threads for a 1-vCPU sandbox.
const hostPidsMin = 128

// setting is one cgroup file and the value the spec asks for.
type setting struct{ file, value string }

// write writes each setting into dir, in order. A file the hierarchy does
// not have (another controller's, or one this kernel lacks) is skipped;
// any other failure is the spec's limit refused by the kernel, which runc
// reports as a failed create too.
func write(dir string, settings []setting) error {
	for _, s := range settings {
		p := filepath.Join(dir, s.file)
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := os.WriteFile(p, []byte(s.value), 0); err != nil {
			return fmt.Errorf("host cgroup: write %q to %s: %w", s.value, p, err)
		}
	}
	return nil
}

// joinSettings are what Join writes before the VM starts: the pids cap
// and the cpuset (QEMU's threads are placed from their first instruction).
func joinSettings(r *specs.LinuxResources) []setting {
	if r == nil {
		return nil
	}
	var out []setting
	if r.Pids != nil && r.Pids.Limit != nil {
		v := "max"
		if l := *r.Pids.Limit; l > 0 {
			v = strconv.FormatInt(max(l, hostPidsMin), 10)
		}
		out = append(out, setting{"pids.max", v})
	}
	if r.CPU != nil {
		if r.CPU.Mems != "" {
			out = append(out, setting{"cpuset.mems", r.CPU.Mems})
		}
		if r.CPU.Cpus != "" {
			out = append(out, setting{"cpuset.cpus", r.CPU.Cpus})
		}
	}
	return out
}

// cpuSettings are the CPU weight and bandwidth, written once the VM is up
// (Limit): they apply to the container's run, not to the VM's boot, which
// under TCG and a quota of a tenth of a CPU would take many seconds.
// Realtime runtime is left to the guest: QEMU's threads are never
// realtime, and a host cgroup's rt_runtime_us is shared with its siblings.
func cpuSettings(r *specs.LinuxResources, unified bool) []setting {
	if r == nil || r.CPU == nil {
		return nil
	}
	c := r.CPU
	var out []setting
	if !unified {
		if c.Shares != nil && *c.Shares != 0 {
			out = append(out, setting{"cpu.shares", strconv.FormatUint(*c.Shares, 10)})
		}
		// Period before quota, as runc: the kernel checks the quota
		// against the period already there.
		if c.Period != nil && *c.Period != 0 {
			out = append(out, setting{"cpu.cfs_period_us", strconv.FormatUint(*c.Period, 10)})
		}
		if c.Quota != nil && *c.Quota != 0 {
			out = append(out, setting{"cpu.cfs_quota_us", strconv.FormatInt(*c.Quota, 10)})
		}
		return out
	}
	if c.Shares != nil && *c.Shares != 0 {
		out = append(out, setting{"cpu.weight", strconv.FormatUint(sharesToWeight(*c.Shares), 10)})
	}
	if v := cpuMax(c.Quota, c.Period); v != "" {
		out = append(out, setting{"cpu.max", v})
	}
	return out
}

// sharesToWeight maps cgroup v1 cpu.shares [2, 262144] onto cgroup v2
// cpu.weight [1, 10000], the conversion runc and crun use.
func sharesToWeight(shares uint64) uint64 {
	shares = min(max(shares, 2), 262144)
	return 1 + ((shares-2)*9999)/262142
}

// cpuMax is cgroup v2's cpu.max for a quota and a period: "max" for no
// quota, the kernel's default period (100ms) when only the quota is given.
// "" when neither is.
func cpuMax(quota *int64, period *uint64) string {
	q, p := int64(0), uint64(0)
	if quota != nil {
		q = *quota
	}
	if period != nil {
		p = *period
	}
	if q == 0 && p == 0 {
		return ""
	}
	v := "max"
	if q > 0 {
		v = strconv.FormatInt(q, 10)
	}
	if p == 0 {
		p = 100000
	}
	return v + " " + strconv.FormatUint(p, 10)
}

// initCpuset gives every cgroup v1 cpuset directory from root down to
// leaf that has no CPUs or memory nodes its parent's: a new cpuset is
// empty, and a process cannot join an empty one. cgroup v2 cpusets
// inherit without this.
func initCpuset(root, leaf string) error {
	rel, err := filepath.Rel(root, leaf)
	if err != nil || rel == "." {
		return err
	}
	parent := root
	for _, part := range strings.Split(rel, "/") {
		dir := filepath.Join(parent, part)
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				return fmt.Errorf("host cgroup: %w", err)
			}
			if strings.TrimSpace(string(b)) != "" {
				continue
			}
			from, err := os.ReadFile(filepath.Join(parent, f))
			if err != nil {
				return fmt.Errorf("host cgroup: %w", err)
			}
			if err := os.WriteFile(filepath.Join(dir, f), from, 0); err != nil {
				return fmt.Errorf("host cgroup: give %s its parent's %s: %w", dir, f, err)
			}
		}
		parent = dir
	}
	return nil
}
