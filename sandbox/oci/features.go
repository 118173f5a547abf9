package oci

import (
	"strconv"

	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// Features is the OCI features document: what skiff does with a
// config.json, and nothing it merely accepts. Seccomp is left out: skiff
// does not apply seccomp profiles (the guest kernel is the boundary).
func Features() *features.Features {
	f, t := false, true
	return &features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: Version,
		Hooks:         []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"},
		MountOptions:  protocol.MountOptions(),
		Linux: &features.Linux{
			// The container's own namespaces in the guest; the network one
			// is the guest's, mirroring the namespace config.json names.
			Namespaces:   []string{"mount", "pid", "network", "ipc", "uts"},
			Capabilities: protocol.Capabilities(),
			// The container's limits are set in its cgroup v2 in the guest,
			// whatever the host runs; on the host, the VM joins
			// linux.cgroupsPath on v1 and v2 alike. Systemd's slice:prefix:name
			// paths are mapped to directories, without asking systemd.
			Cgroup:          &features.Cgroup{V1: &t, V2: &t, Systemd: &f, SystemdUser: &f, Rdma: &f},
			Apparmor:        &features.Apparmor{Enabled: &f},
			Selinux:         &features.Selinux{Enabled: &f},
			MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: &f}},
		},
		Annotations: map[string]string{
			"io.github.skiff.vm":            "qemu",
			"io.github.skiff.guest.cgroup":  "v2",
			"io.github.skiff.host.cgroup":   "the VM's processes join linux.cgroupsPath (cgroup v1 or v2)",
			"io.github.skiff.agentProtocol": strconv.Itoa(protocol.Version),
		},
	}
}
