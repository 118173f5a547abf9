package commands

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"
)

// updateUnsupported are runc update flags for limits the guest does not
// take from skiff; they are refused rather than silently dropped.
var updateUnsupported = []string{"blkio-weight", "cpu-rt-period", "cpu-rt-runtime", "cpuset-cpus", "cpuset-mems",
	"kernel-memory", "kernel-memory-tcp", "l3-cache-schema", "mem-bw-schema"}

// Update changes a running container's limits in its guest cgroup.
var Update = &cli.Command{
	Name:      "update",
	Usage:     "update a container's resource limits (in its cgroup in the guest; the VM keeps its size)",
	ArgsUsage: "<container-id>",
	Description: `Changes memory, CPU and pids limits of a created, running or paused
container, as runc update does, in the container's cgroup inside its VM.
The VM's memory and vCPUs were sized at create and do not change: raising
a limit above them caps nothing more. -1 means unlimited.`,
	Flags: append([]cli.Flag{
		&cli.StringFlag{Name: "resources", Aliases: []string{"r"}, Usage: "file with the resources (linux.resources of config.json) to set, or - for stdin"},
		&cli.StringFlag{Name: "memory", Usage: "memory limit (bytes, or with a k, m, g suffix; -1 unlimited)"},
		&cli.StringFlag{Name: "memory-reservation", Usage: "memory soft limit (memory.low)"},
		&cli.StringFlag{Name: "memory-swap", Usage: "memory plus swap limit (-1 unlimited)"},
		&cli.StringFlag{Name: "cpu-quota", Usage: "CPU time in microseconds per period (-1 unlimited)"},
		&cli.StringFlag{Name: "cpu-period", Usage: "CPU quota period in microseconds"},
		&cli.StringFlag{Name: "cpu-share", Usage: "CPU shares (relative weight)"},
		&cli.StringFlag{Name: "pids-limit", Usage: "maximum number of processes (-1 unlimited)"},
	}, unsupportedUpdateFlags()...),
	Action: func(c *cli.Context) error {
		id, err := oneID(c)
		if err != nil {
			return err
		}
		for _, f := range updateUnsupported {
			if c.IsSet(f) {
				return fmt.Errorf("update: --%s is not supported by skiff: only memory, CPU quota/period/shares and pids limits can change in the guest", f)
			}
		}
		r, err := updateResources(c)
		if err != nil {
			return err
		}
		return store(c).Update(c.Context, id, r)
	},
}

func unsupportedUpdateFlags() []cli.Flag {
	var fs []cli.Flag
	for _, f := range updateUnsupported {
		fs = append(fs, &cli.StringFlag{Name: f, Usage: "not supported (refused)", Hidden: true})
	}
	return fs
}

// updateResources reads --resources, then lets the flags override it, as
// runc does.
func updateResources(c *cli.Context) (*specs.LinuxResources, error) {
	r := &specs.LinuxResources{}
	if path := c.String("resources"); path != "" {
		var data []byte
		var err error
		if path == "-" {
			data, err = io.ReadAll(os.Stdin)
		} else {
			data, err = os.ReadFile(path)
		}
		if err != nil {
			return nil, fmt.Errorf("update: read resources: %w", err)
		}
		if err := json.Unmarshal(data, r); err != nil {
			return nil, fmt.Errorf("update: %s is not a linux.resources JSON object: %w", path, err)
		}
		if r.BlockIO != nil || r.HugepageLimits != nil || r.Network != nil || r.Rdma != nil ||
			(r.CPU != nil && (r.CPU.Cpus != "" || r.CPU.Mems != "" || r.CPU.RealtimeRuntime != nil)) {
			slog.Warn("update: only memory, CPU quota/period/shares and pids limits change in the guest; the rest of the resources is ignored")
		}
	}
	mem := func() *specs.LinuxMemory {
		if r.Memory == nil {
			r.Memory = &specs.LinuxMemory{}
		}
		return r.Memory
	}
	cpu := func() *specs.LinuxCPU {
		if r.CPU == nil {
			r.CPU = &specs.LinuxCPU{}
		}
		return r.CPU
	}
	for _, f := range []struct {
		name  string
		bytes bool
		set   func(int64) error
	}{
		{"memory", true, func(v int64) error { mem().Limit = &v; return nil }},
		{"memory-reservation", true, func(v int64) error { mem().Reservation = &v; return nil }},
		{"memory-swap", true, func(v int64) error { mem().Swap = &v; return nil }},
		{"cpu-quota", false, func(v int64) error { cpu().Quota = &v; return nil }},
		{"cpu-period", false, func(v int64) error {
			if v <= 0 {
				return fmt.Errorf("must be positive")
			}
			p := uint64(v)
			cpu().Period = &p
			return nil
		}},
		{"cpu-share", false, func(v int64) error {
			if v <= 0 {
				return fmt.Errorf("must be positive")
			}
			s := uint64(v)
			cpu().Shares = &s
			return nil
		}},
		{"pids-limit", false, func(v int64) error { r.Pids = &specs.LinuxPids{Limit: &v}; return nil }},
	} {
		s := c.String(f.name)
		if s == "" {
			continue
		}
		var v int64
		var err error
		if f.bytes {
			v, err = parseBytes(s)
		} else {
			v, err = strconv.ParseInt(s, 10, 64)
		}
		if err == nil {
			err = f.set(v)
		}
		if err != nil {
			return nil, fmt.Errorf("update: invalid --%s %q: %v", f.name, s, err)
		}
	}
	return r, nil
}

// parseBytes reads a size as runc's flags take it: a number of bytes with
// an optional k, m, g, t (or kb, mb, ...) suffix, binary multiples; -1 is
// unlimited.
func parseBytes(s string) (int64, error) {
	if s == "-1" {
		return -1, nil
	}
	t := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), "b")
	mult := int64(1)
	if n := len(t); n > 0 {
		if i := strings.IndexByte("kmgt", t[n-1]); i >= 0 {
			mult = 1 << (10 * (i + 1))
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("not a size (use bytes, or a k, m, g suffix)")
	}
	return int64(v * float64(mult)), nil
}
