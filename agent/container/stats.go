package container

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// UpdateResources changes the limits of the container's cgroup while it
// runs. Fields left unset keep their value; a memory, swap or pids limit
// of -1 and a CPU quota of -1 mean unlimited ("max"), as runc update takes
// them.
func (c *Container) UpdateResources(r *specs.LinuxResources) error {
	if c.cgroup == "" {
		return errors.New("the guest has no cgroup2: limits cannot be changed")
	}
	if r == nil {
		return nil
	}
	select {
	case <-c.done:
		return errors.New("the container's process has exited")
	default:
	}
	// applyResources writes the positive values (and enables the
	// controllers); what it cannot express is written here first.
	cp := *r
	var writes [][2]string
	if m := r.Memory; m != nil {
		mc := *m
		if mc.Limit != nil && *mc.Limit == -1 {
			writes = append(writes, [2]string{"memory.max", "max"})
			mc.Limit = nil
		}
		if mc.Swap != nil && *mc.Swap == -1 {
			writes = append(writes, [2]string{"memory.swap.max", "max"})
			mc.Swap = nil
		}
		cp.Memory = &mc
	}
	if cpu := r.CPU; cpu != nil && (cpu.Quota != nil || cpu.Period != nil) {
		// cpu.max holds quota and period together: keep the half not given.
		quota, period := "max", "100000"
		if f := strings.Fields(readString(filepath.Join(c.cgroup, "cpu.max"))); len(f) == 2 {
			quota, period = f[0], f[1]
		}
		if cpu.Quota != nil {
			quota = strconv.FormatInt(*cpu.Quota, 10)
			if *cpu.Quota <= 0 {
				quota = "max"
			}
		}
		if cpu.Period != nil && *cpu.Period > 0 {
			period = strconv.FormatUint(*cpu.Period, 10)
		}
		cc := *cpu
		cc.Quota, cc.Period = nil, nil
		cp.CPU = &cc
		writes = append(writes, [2]string{"cpu.max", quota + " " + period})
	}
	if p := r.Pids; p != nil && p.Limit != nil && *p.Limit <= 0 {
		writes = append(writes, [2]string{"pids.max", "max"})
		cp.Pids = nil
	}
	if err := applyResources(c.cgroup, &cp); err != nil {
		return err
	}
	for _, w := range writes {
		if err := os.WriteFile(filepath.Join(c.cgroup, w[0]), []byte(w[1]), 0); err != nil {
			return fmt.Errorf("set %s = %s: %w", w[0], w[1], err)
		}
	}
	return nil
}

// Stats reads the container's usage from its cgroup. Counters of a
// controller the guest kernel lacks read as zero.
func (c *Container) Stats() (*protocol.Stats, error) {
	if c.cgroup == "" {
		return nil, errors.New("the guest has no cgroup2: no statistics")
	}
	dir := c.cgroup
	var s protocol.Stats
	cpu := readKeyed(filepath.Join(dir, "cpu.stat"))
	s.CPU.Usage.Total = cpu["usage_usec"] * 1000
	s.CPU.Usage.User = cpu["user_usec"] * 1000
	s.CPU.Usage.Kernel = cpu["system_usec"] * 1000
	s.CPU.Throttling.Periods = cpu["nr_periods"]
	s.CPU.Throttling.ThrottledPeriods = cpu["nr_throttled"]
	s.CPU.Throttling.ThrottledTime = cpu["throttled_usec"] * 1000

	s.Memory.Usage.Usage = readUint(filepath.Join(dir, "memory.current"))
	s.Memory.Usage.Limit = readUint(filepath.Join(dir, "memory.max"))
	s.Memory.Usage.Max = readUint(filepath.Join(dir, "memory.peak"))
	s.Memory.Usage.Failcnt = readKeyed(filepath.Join(dir, "memory.events"))["max"]
	s.Memory.Swap.Usage = readUint(filepath.Join(dir, "memory.swap.current"))
	s.Memory.Swap.Limit = readUint(filepath.Join(dir, "memory.swap.max"))
	if raw := readKeyed(filepath.Join(dir, "memory.stat")); len(raw) > 0 {
		s.Memory.Raw = raw
		s.Memory.Cache = raw["file"]
	}

	s.Pids.Current = readUint(filepath.Join(dir, "pids.current"))
	s.Pids.Limit = readUint(filepath.Join(dir, "pids.max"))
	s.Blkio = readIOStat(filepath.Join(dir, "io.stat"))
	return &s, nil
}

func readString(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

// readUint reads a one-number file; "max" and a missing file read as 0.
func readUint(path string) uint64 {
	n, _ := strconv.ParseUint(readString(path), 10, 64)
	return n
}

// readKeyed reads a "key value" per line file (cpu.stat, memory.stat).
func readKeyed(path string) map[string]uint64 {
	out := map[string]uint64{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

// readIOStat reads io.stat: "MAJ:MIN rbytes=N wbytes=N rios=N wios=N
// dbytes=N dios=N" per device.
func readIOStat(path string) protocol.BlkioStats {
	var s protocol.BlkioStats
	b, err := os.ReadFile(path)
	if err != nil {
		return s
	}
	ops := map[string]struct {
		op    string
		bytes bool
	}{
		"rbytes": {"Read", true}, "wbytes": {"Write", true}, "dbytes": {"Discard", true},
		"rios": {"Read", false}, "wios": {"Write", false}, "dios": {"Discard", false},
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		var major, minor uint64
		if _, err := fmt.Sscanf(f[0], "%d:%d", &major, &minor); err != nil {
			continue
		}
		for _, kv := range f[1:] {
			k, v, _ := strings.Cut(kv, "=")
			o, ok := ops[k]
			n, err := strconv.ParseUint(v, 10, 64)
			if !ok || err != nil {
				continue
			}
			e := protocol.BlkioEntry{Major: major, Minor: minor, Op: o.op, Value: n}
			if o.bytes {
				s.IoServiceBytesRecursive = append(s.IoServiceBytesRecursive, e)
			} else {
				s.IoServicedRecursive = append(s.IoServicedRecursive, e)
			}
		}
	}
	return s
}
