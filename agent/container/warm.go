package container

import (
	"encoding/json"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Warm goes through the agent's side of New with spec, creating nothing
// that stays: validation, encoding the spec for the init, a cgroup, pipes.
func Warm(spec *specs.Spec) error {
	if err := Validate(spec); err != nil {
		return err
	}
	if _, err := json.Marshal(spec); err != nil {
		return err
	}
	if dir, fd := makeCgroup("-warm"); fd >= 0 {
		unix.Close(fd)
		if spec.Linux != nil {
			applyResources(dir, spec.Linux.Resources)
		}
		os.Remove(dir)
	}
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	return nil
}

// warmDecoder decodes a spec with the parts most specs have, so that
// encoding/json has built its view of those types (reflection it caches
// per process) before a zygote waits: a VM template saves it, and every
// clone's zygote decodes its real spec without that first-time cost.
func warmDecoder() {
	limit, shares, pids := int64(1<<30), uint64(1024), int64(100)
	sample := specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			User: specs.User{UID: 1, GID: 1, AdditionalGids: []uint32{1}},
			Args: []string{"sh"}, Env: []string{"PATH=/bin"}, Cwd: "/",
			Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_CHOWN"}, Effective: []string{"CAP_CHOWN"}, Permitted: []string{"CAP_CHOWN"}},
			Rlimits:      []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
		},
		Root:     &specs.Root{Path: "rootfs", Readonly: true},
		Hostname: "h",
		Mounts:   []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid"}}},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}},
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
				Memory:  &specs.LinuxMemory{Limit: &limit},
				CPU:     &specs.LinuxCPU{Shares: &shares},
				Pids:    &specs.LinuxPids{Limit: &pids},
			},
			Devices:       []specs.LinuxDevice{{Path: "/dev/x", Type: "c"}},
			MaskedPaths:   []string{"/proc/kcore"},
			ReadonlyPaths: []string{"/proc/sys"},
			Sysctl:        map[string]string{"a": "b"},
			CgroupsPath:   "/x",
		},
		Annotations: map[string]string{"a": "b"},
	}
	if b, err := json.Marshal(&sample); err == nil {
		json.Unmarshal(b, new(specs.Spec))
	}
}
