package oci

import (
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The annotations by which CRI runtimes group a pod's containers: one
// sandbox container (the pause container), then the pod's containers,
// each naming the sandbox container's ID. A VM runtime recognises a pod by
// them, never by the namespace paths of the spec (those name the host
// process standing for the sandbox container).
const (
	containerdType      = "io.kubernetes.cri.container-type"
	containerdSandboxID = "io.kubernetes.cri.sandbox-id"
	crioType            = "io.kubernetes.cri-o.ContainerType"
	crioSandboxID       = "io.kubernetes.cri-o.SandboxID"

	// SandboxAnnotation is added to the state of every container: the ID
	// of the sandbox (the VM) it runs in.
	SandboxAnnotation = "io.github.skiff.sandbox"
)

// Pod roles.
const (
	RoleNone      = ""          // a container alone in its sandbox
	RoleSandbox   = "sandbox"   // a pod's sandbox container: it makes the VM
	RoleContainer = "container" // a pod's container, in its sandbox's VM
)

// PodRole says what a spec is in a pod: its role and, for a pod's
// container, the ID of its sandbox container.
func PodRole(spec *specs.Spec) (role, sandboxID string) {
	a := spec.Annotations
	for _, k := range []struct{ typ, sandbox string }{{containerdType, containerdSandboxID}, {crioType, crioSandboxID}} {
		switch a[k.typ] {
		case RoleSandbox:
			return RoleSandbox, ""
		case RoleContainer:
			return RoleContainer, a[k.sandbox]
		}
	}
	return RoleNone, ""
}

// PodSize is the size a CRI runtime asks for a pod's sandbox (containerd
// passes it on the sandbox container): memory in bytes, CPU as a quota
// per period. Zero values: not given.
func PodSize(spec *specs.Spec) (memory int64, quota, period int64) {
	a := spec.Annotations
	num := func(k string) int64 {
		n, err := strconv.ParseInt(a[k], 10, 64)
		if err != nil || n < 0 {
			return 0
		}
		return n
	}
	return num("io.kubernetes.cri.sandbox-memory"), num("io.kubernetes.cri.sandbox-cpu-quota"), num("io.kubernetes.cri.sandbox-cpu-period")
}
