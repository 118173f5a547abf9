package installer

import (
	"fmt"

	"github.com/skiff-oci/skiff/config"
)

// Labels the deploy/ manifests and the RuntimeClass agree on.
const (
	// EnabledLabel selects the nodes the deploy/ DaemonSet installs skiff on.
	EnabledLabel = "skiff.io/enabled"
	// ReadyLabel is set on a node once skiff is installed there; the
	// RuntimeClass schedules skiff pods only onto such nodes.
	ReadyLabel = "skiff.io/ready"
)

// HostOverheadMiB is the host memory a sandbox takes beyond its guest's RAM:
// QEMU's own (device model, TCG translation cache, its libraries) and the
// shim's. Measured on a sandbox of a 512 MiB guest under TCG: QEMU's RSS
// was 269 MiB, of which 102 MiB were guest RAM actually touched, 56 MiB the
// translation cache (which grows with the code the guest runs) and the rest
// QEMU itself; the shim's RSS was 10 MiB. That is 177 MiB beside the guest
// RAM; 256 leaves room for the translation cache to grow. Under KVM there
// is no translation cache, so it is generous there.
const HostOverheadMiB = 256

// MilliCPUPerVCPU is the CPU the RuntimeClass reserves per guest vCPU for
// what runs beside the workload: QEMU's main loop and I/O threads, the
// shim's relaying. The workload's own CPU is the pod's containers' request.
const MilliCPUPerVCPU = 250

// Overhead is the pod overhead (RuntimeClass overhead.podFixed) of one
// skiff sandbox.
//
//	memory = hypervisor.default_memory + HostOverheadMiB   (MiB)
//	cpu    = hypervisor.default_vcpus × MilliCPUPerVCPU    (millicores)
//
// The whole guest RAM counts, not what the containers request: the VM's
// size is fixed by the configuration, the guest's page cache fills it over
// time, and a node that undercounts it OOM-kills QEMU, which kills the pod.
func Overhead(h config.Hypervisor) (memoryMiB, milliCPU int) {
	return h.DefaultMemory + HostOverheadMiB, h.DefaultVCPUs * MilliCPUPerVCPU
}

// RuntimeClassYAML is the RuntimeClass for handler "skiff", sized for cfg.
func RuntimeClassYAML(cfg *config.Config) ([]byte, error) {
	if cfg == nil {
		cfg = config.Default()
	}
	h := cfg.Hypervisor
	if h.DefaultMemory < 1 || h.DefaultVCPUs < 1 {
		return nil, fmt.Errorf("runtime class: hypervisor.default_memory (%d) and default_vcpus (%d) must be positive", h.DefaultMemory, h.DefaultVCPUs)
	}
	mem, cpu := Overhead(h)
	return fmt.Appendf(nil, `# Pods with runtimeClassName: skiff run each in its own VM (%d MiB, %d vCPU).
# overhead.podFixed: memory = default_memory %d MiB + %d MiB for QEMU and
# the shim; cpu = %dm per vCPU. Regenerate after changing the VM size:
# skiff install --for kubernetes --dry-run
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: %s
  labels:
    app.kubernetes.io/name: skiff
handler: %s
overhead:
  podFixed:
    memory: %dMi
    cpu: %dm
scheduling:
  nodeSelector:
    %s: "true"
`, h.DefaultMemory, h.DefaultVCPUs, h.DefaultMemory, HostOverheadMiB, MilliCPUPerVCPU,
		RuntimeName, RuntimeName, mem, cpu, ReadyLabel), nil
}
