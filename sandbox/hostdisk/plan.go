// Package hostdisk gives a sandbox its guest-local scratch disk: it plans
// which of a container's mounts live on the disk instead of a shared
// filesystem, and makes, formats and sizes the disk's sparse file in the
// sandbox's directory. It is host plumbing: it must not import hostfs,
// hostnet, hostcgroup, the factory, the shim or the state store.
//
// Why a disk: overlayfs cannot take a shared filesystem (9p, virtio-fs)
// as its upper layer once QEMU no longer writes the host as root, file
// capabilities do not survive a share, and under emulation every shared
// filesystem operation is a round trip to the host: 2000 small files
// take ~10x longer over 9p than on ext4 in the guest.
package hostdisk

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/agentclient/protocol"
	"github.com/skiff-oci/skiff/sandbox/oci"
)

// Annotations a container's spec may carry.
const (
	// AnnotationPaths lists container paths (comma-separated) that are
	// scratch, whether or not the spec mounts something there.
	AnnotationPaths = "io.skiff.scratch"
	// AnnotationSize sizes the sandbox's scratch disk ("20G"), over the
	// configuration's storage.scratch_size; read from the spec that makes
	// the sandbox.
	AnnotationSize = "io.skiff.scratch.size"
)

// BuildDirs are scratch in a privileged container, whatever its spec
// mounts there: where podman, buildah, docker and buildkit keep images
// and their overlay layers, which need a local filesystem.
var BuildDirs = []string{"/var/lib/containers", "/var/lib/docker", "/var/lib/buildkit"}

// emptyDirMarker is in the host path of every Kubernetes emptyDir volume
// kubelet bind-mounts (pods/UID/volumes/kubernetes.io~empty-dir/NAME).
const emptyDirMarker = "/volumes/kubernetes.io~empty-dir/"

// Rules say which mounts are scratch beyond the annotation and the
// defaults: the configuration's storage.scratch_paths, and how to tell a
// memory-backed emptyDir (kubelet mounts a tmpfs at its host path).
type Rules struct {
	Paths   []string
	IsTmpfs func(hostPath string) bool
}

// Plan is a container's scratch mounts: where each goes in its spec, and
// what the agent must make on the disk.
type Plan struct {
	// Scratch is the agent's part; nil when the container has no
	// scratch mount.
	Scratch *protocol.Scratch
	// at holds, by index in the spec without them, the scratch mounts to
	// put back before that index (len: at the end).
	at map[int][]specs.Mount
}

// Split takes the scratch mounts out of a container's spec (returned as a
// copy; spec is not changed): the rest goes through the shared
// filesystem's planning, and Restore puts them back in their places. cid
// is the container's ID: its own scratch directories are separate from
// every other container's.
func Split(spec *specs.Spec, cid string, r Rules) (*specs.Spec, *Plan, error) {
	want := map[string]bool{}
	for _, p := range r.Paths {
		want[filepath.Clean(p)] = true
	}
	for _, p := range strings.Split(spec.Annotations[AnnotationPaths], ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !filepath.IsAbs(p) || filepath.Clean(p) == "/" {
			return nil, nil, fmt.Errorf("annotation %s: %q must be an absolute container path other than /", AnnotationPaths, p)
		}
		want[filepath.Clean(p)] = true
	}
	if spec.Process != nil && protocol.Privileged(spec.Process.Capabilities) {
		for _, d := range BuildDirs {
			want[d] = true
		}
	}

	out := *spec
	out.Mounts = nil
	p := &Plan{at: map[int][]specs.Mount{}}
	own := filepath.Join(protocol.ScratchDir, "c", cid)
	dirs := map[string]bool{}
	add := func(m specs.Mount, dir string) {
		p.at[len(out.Mounts)] = append(p.at[len(out.Mounts)], scratchMount(m, dir))
		dirs[dir] = true
	}
	mounted := map[string]bool{}
	for _, m := range spec.Mounts {
		dst := filepath.Clean(m.Destination)
		switch {
		case want[dst]:
			// A spec mount there, bind or not, is replaced: the path
			// is scratch by rule (said in the README).
			add(m, filepath.Join(own, dirName(dst)))
			mounted[dst] = true
		case oci.IsBind(m) && strings.Contains(m.Source, emptyDirMarker) && (r.IsTmpfs == nil || !r.IsTmpfs(m.Source)):
			// An emptyDir lives as long as its pod, and every container
			// of the pod that mounts it sees the same one: its
			// directory is named for the volume's host path, not the
			// container.
			add(m, filepath.Join(protocol.ScratchDir, "v", hashName(filepath.Clean(m.Source))))
		default:
			out.Mounts = append(out.Mounts, m)
		}
	}
	// Paths the spec mounts nothing at: mounted where nothing below them
	// would be hidden, before the first mount under them.
	var missing []string
	for d := range want {
		if !mounted[d] {
			missing = append(missing, d)
		}
	}
	sort.Strings(missing)
	for _, d := range missing {
		at := len(out.Mounts)
		for i, m := range out.Mounts {
			if strings.HasPrefix(filepath.Clean(m.Destination), d+"/") {
				at = i
				break
			}
		}
		m := specs.Mount{Destination: d, Type: "bind", Options: []string{"rbind", "rw"}}
		p.at[at] = append(p.at[at], scratchMount(m, filepath.Join(own, dirName(d))))
		dirs[filepath.Join(own, dirName(d))] = true
	}
	if len(dirs) > 0 {
		p.Scratch = &protocol.Scratch{Serial: protocol.ScratchSerial}
		for d := range dirs {
			p.Scratch.Dirs = append(p.Scratch.Dirs, d)
		}
		sort.Strings(p.Scratch.Dirs)
	}
	return &out, p, nil
}

// Restore puts the scratch mounts back into a spec made from the one
// Split returned (same mounts, in the same order, sources rewritten).
func (p *Plan) Restore(spec *specs.Spec) {
	if len(p.at) == 0 {
		return
	}
	var mounts []specs.Mount
	for i := 0; i <= len(spec.Mounts); i++ {
		mounts = append(mounts, p.at[i]...)
		if i < len(spec.Mounts) {
			mounts = append(mounts, spec.Mounts[i])
		}
	}
	spec.Mounts = mounts
}

// keptOptions are the options of a replaced mount that still mean
// something on a bind of a scratch directory.
var keptOptions = map[string]bool{"ro": true, "rw": true, "nosuid": true, "nodev": true, "noexec": true,
	"suid": true, "dev": true, "exec": true, "noatime": true, "relatime": true, "nodiratime": true}

// scratchMount is m as a bind of the scratch directory dir.
func scratchMount(m specs.Mount, dir string) specs.Mount {
	opts := []string{"rbind"}
	for _, o := range m.Options {
		if keptOptions[o] {
			opts = append(opts, o)
		}
	}
	return specs.Mount{Destination: m.Destination, Type: "bind", Source: dir, Options: opts}
}

// dirName is a container path as one directory name on the disk:
// readable (its base name), and distinct for distinct clean paths.
func dirName(dst string) string {
	return filepath.Base(dst) + "-" + hashName(dst)[:12]
}

// hashName names a volume by its host path without putting host paths
// in the guest.
func hashName(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:12])
}
