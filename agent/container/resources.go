package container

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// PrepareCgroups creates the parent of the containers' cgroups and enables
// the controllers their limits need, once: changing subtree_control waits
// for an RCU grace period (~20 ms under TCG), which the agent pays at boot,
// before a VM template is saved, rather than in each container's creation.
func PrepareCgroups() {
	prepareOnce.Do(func() {
		if err := os.MkdirAll(cgroupRoot, 0o755); err != nil {
			return
		}
		for _, p := range []string{filepath.Dir(cgroupRoot), cgroupRoot} {
			os.WriteFile(filepath.Join(p, "cgroup.subtree_control"), []byte("+memory +cpu +pids"), 0)
		}
	})
}

var prepareOnce sync.Once

// applyResources writes the spec's limits into the container's cgroup v2
// directory in the guest: the limits hold inside the VM as they would on a
// host, whatever the VM's own size.
func applyResources(dir string, r *specs.LinuxResources) error {
	if r == nil || dir == "" {
		return nil
	}
	PrepareCgroups()
	var writes [][2]string
	if m := r.Memory; m != nil {
		if m.Limit != nil && *m.Limit > 0 {
			writes = append(writes, [2]string{"memory.max", strconv.FormatInt(*m.Limit, 10)})
		}
		if m.Reservation != nil && *m.Reservation > 0 {
			writes = append(writes, [2]string{"memory.low", strconv.FormatInt(*m.Reservation, 10)})
		}
		if m.Swap != nil && m.Limit != nil && *m.Swap > *m.Limit {
			writes = append(writes, [2]string{"memory.swap.max", strconv.FormatInt(*m.Swap-*m.Limit, 10)})
		}
	}
	if c := r.CPU; c != nil {
		if c.Quota != nil && *c.Quota > 0 {
			period := uint64(100000)
			if c.Period != nil && *c.Period > 0 {
				period = *c.Period
			}
			writes = append(writes, [2]string{"cpu.max", fmt.Sprintf("%d %d", *c.Quota, period)})
		}
		if c.Shares != nil && *c.Shares > 0 {
			// cgroup v1 shares (2..262144) to v2 weight (1..10000), the
			// conversion runc and crun use.
			w := 1 + ((*c.Shares-2)*9999)/262142
			writes = append(writes, [2]string{"cpu.weight", strconv.FormatUint(w, 10)})
		}
	}
	if p := r.Pids; p != nil && p.Limit != nil && *p.Limit > 0 {
		writes = append(writes, [2]string{"pids.max", strconv.FormatInt(*p.Limit, 10)})
	}
	for _, w := range writes {
		if err := os.WriteFile(filepath.Join(dir, w[0]), []byte(w[1]), 0); err != nil {
			return fmt.Errorf("set %s = %s: %w", w[0], w[1], err)
		}
	}
	return nil
}
