package shim

import (
	"context"
	"runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/config"
	"github.com/skiff-oci/skiff/hypervisor"
	"github.com/skiff-oci/skiff/sandbox/hostfs"
	"github.com/skiff-oci/skiff/sandbox/oci"
)

// vmSize sizes a sandbox's VM from the size a CRI runtime asked for its
// pod, else from its container's limits: memory is the limit plus the
// guest's own overhead (kernel, agent, page cache for the shared
// filesystem), vCPUs the CPU quota rounded up. Without either the
// configured defaults apply; the configured maxima always bound the result.
// The limits themselves are also enforced inside the guest (the agent
// writes them into the container's cgroup), so a VM a little larger than
// the limit never lets the container use more than its limit.
func vmSize(c *config.Hypervisor, spec *specs.Spec) (vcpus, memMiB int) {
	vcpus, memMiB = c.DefaultVCPUs, c.DefaultMemory
	var r *specs.LinuxResources
	if spec.Linux != nil {
		r = spec.Linux.Resources
	}
	if r != nil && r.Memory != nil && r.Memory.Limit != nil && *r.Memory.Limit > 0 {
		memMiB = int((*r.Memory.Limit+(1<<20)-1)>>20) + c.MemoryOverhead
	}
	if r != nil && r.CPU != nil && r.CPU.Quota != nil && *r.CPU.Quota > 0 {
		period := int64(100000)
		if r.CPU.Period != nil && *r.CPU.Period > 0 {
			period = int64(*r.CPU.Period)
		}
		vcpus = int((*r.CPU.Quota + period - 1) / period)
	}
	if mem, quota, period := oci.PodSize(spec); mem > 0 || quota > 0 {
		if mem > 0 {
			memMiB = int((mem+(1<<20)-1)>>20) + c.MemoryOverhead
		}
		if quota > 0 && period > 0 {
			vcpus = int((quota + period - 1) / period)
		}
	}
	maxCPUs := c.MaxVCPUs
	if maxCPUs <= 0 {
		maxCPUs = runtime.NumCPU()
	}
	vcpus = min(max(vcpus, 1), maxCPUs)
	memMiB = min(max(memMiB, 64), c.MaxMemory)
	return vcpus, memMiB
}

// vmConfig is the sandbox's VM as the factory is asked for it: the
// configuration's, sized for spec, with the shares of plan and its files
// in the sandbox's directory. The factory adds NICs and chooses how the
// VM starts.
func (s *shim) vmConfig(ctx context.Context, spec *specs.Spec, plan *hostfs.Plan) (hypervisor.Config, error) {
	c, why, err := s.factory.BaseConfig(ctx)
	if err != nil {
		return c, err
	}
	s.log.Debug("accelerator", "accel", c.Accel, "why", why)
	c.VCPUs, c.MemoryMiB = vmSize(&s.cfg.Hypervisor, spec)
	c.Name = "skiff-" + s.dir.ID()
	c.Shares = plan.Host
	c.AgentSocket = s.dir.AgentSocket()
	c.QMPSocket = s.dir.QMPSocket()
	c.ConsoleLog = s.dir.ConsoleLog()
	c.StderrLog = s.dir.QEMULog()
	c.PIDFile = s.dir.QEMUPIDFile()
	return c, nil
}
