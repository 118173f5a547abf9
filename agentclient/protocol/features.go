package protocol

import (
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// What the host promises in `skiff features` and the guest honours: one
// list each, so that the two cannot drift apart. The guest maps the names
// to kernel values itself (agent/container); a test there checks that it
// knows every name listed here, and no other.

// capabilityNames is the kernel's capability numbering
// (linux/capability.h): the name at index i is capability i.
var capabilityNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
	"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
	"CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
	"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
	"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
	"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// Capabilities lists the capability names the agent knows, in the
// kernel's numbering: the name at index i is capability i. The caller
// owns the slice.
func Capabilities() []string { return slices.Clone(capabilityNames) }

// mountOptions is every mount option the agent honours: mount(2) flags,
// propagation, bind and runc's tmpcopyup, sorted. Other words are passed
// to the filesystem as data, which is not the same as honouring them.
var mountOptions = []string{
	"async", "atime", "bind", "defaults", "dev", "diratime", "dirsync",
	"exec", "mand", "noatime", "nodev", "nodiratime", "noexec", "nomand",
	"norelatime", "nostrictatime", "nosuid", "private", "rbind", "relatime",
	"ro", "rprivate", "rshared", "rslave", "runbindable", "rw", "shared",
	"slave", "strictatime", "suid", "sync", "tmpcopyup", "unbindable",
}

// MountOptions lists the mount options the agent honours, sorted. The
// caller owns the slice.
func MountOptions() []string { return slices.Clone(mountOptions) }

// privilegedCaps is how many capabilities, from 0, a privileged
// container's bounding set holds at least: CAP_CHOWN up to CAP_AUDIT_READ,
// every capability Linux has had since 4.3. podman --privileged and a
// Kubernetes privileged container get every capability the host knows,
// which includes these.
const privilegedCaps = 38

// Privileged tells whether a process with caps is what podman
// --privileged and Kubernetes' privileged: true make: every capability in
// its bounding set. Host and guest both decide on it (the host gives such
// a container scratch build directories, the guest its /dev/fuse), so it
// is defined once.
func Privileged(caps *specs.LinuxCapabilities) bool {
	if caps == nil {
		return false
	}
	have := map[string]bool{}
	for _, c := range caps.Bounding {
		have[strings.ToUpper(c)] = true
	}
	for _, c := range capabilityNames[:privilegedCaps] {
		if !have[c] {
			return false
		}
	}
	return true
}
