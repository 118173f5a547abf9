// Package hostcgroup puts a sandbox's host processes (its shim and its
// VMM) into the host cgroup linux.cgroupsPath names, with the spec's
// limits as they apply to the whole VM, records what it made in the
// sandbox's directory and removes it again. It is host plumbing: it
// must not import the other host plumbing packages (hostnet, hostfs), the
// factory, the shim or the state store.
package hostcgroup

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/internal/mountinfo"
)

// The VM's processes (the shim and QEMU, which the shim
// starts and which inherits its cgroup) join the cgroup linux.cgroupsPath
// names, so that host accounting and limits (podman stats, a kubelet's pod
// cgroup, an operator's quota) cover the whole sandbox, and the spec's
// limits hold for the whole VM there too (limits.go), as runc's hold for
// its container's processes.

const (
	// hostCgroupFile records what the shim created and joined, so that
	// delete removes it even after a crash.
	hostCgroupFile = "host-cgroups.json"
	cgroupMount    = "/sys/fs/cgroup"
	// hostMemoryMargin is QEMU's own memory beside guest RAM (measured: ~180
	// MiB under TCG with its translation cache, plus the shim), rounded up.
	hostMemoryMargin = 256
)

// v1Controllers are the cgroup v1 hierarchies the VM joins: those whose
// limits the spec sets. A new cpuset cgroup gets its parent's CPUs and
// memory nodes before anything joins it (initCpuset).
var v1Controllers = []string{"memory", "cpu", "cpuacct", "pids", "cpuset"}

type hostCgroups struct {
	// Leaves are the sandbox's own directories, one per hierarchy.
	Leaves []string `json:"leaves"`
	// Parents are directories above them that skiff created, removed
	// after the leaves when nothing else uses them.
	Parents []string `json:"parents,omitempty"`
	// Kept are leaves that existed, empty, before skiff joined them:
	// delete leaves them, as it found them.
	Kept []string `json:"kept,omitempty"`
}

// Path turns linux.cgroupsPath into a path below each hierarchy's
// root: "" when the spec names none. Systemd's "slice:prefix:name" form
// maps to the directories systemd would use (runc's cgroupfs layout when
// systemd does not manage them): "machine.slice:libpod:ID" is
// /machine.slice/libpod-ID.scope. A relative path is taken from the
// hierarchy's root.
func Path(spec *specs.Spec) (string, error) {
	if spec.Linux == nil || spec.Linux.CgroupsPath == "" {
		return "", nil
	}
	p := spec.Linux.CgroupsPath
	if parts := strings.Split(p, ":"); len(parts) == 3 && !strings.HasPrefix(p, "/") {
		slice, prefix, name := parts[0], parts[1], parts[2]
		if slice == "" {
			slice = "system.slice"
		}
		dir, err := expandSlice(slice)
		if err != nil {
			return "", fmt.Errorf("linux.cgroupsPath %q: %w", p, err)
		}
		if name == "" || strings.Contains(name, "/") {
			return "", fmt.Errorf("linux.cgroupsPath %q: the unit name must be a non-empty name without /", p)
		}
		unit := name
		if !strings.HasSuffix(name, ".slice") {
			if prefix != "" {
				unit = prefix + "-" + name
			}
			unit += ".scope"
		}
		p = dir + "/" + unit
	}
	clean := filepath.Clean("/" + p)
	if clean == "/" {
		return "", fmt.Errorf("linux.cgroupsPath %q names the root cgroup: give the sandbox a cgroup of its own", spec.Linux.CgroupsPath)
	}
	return clean, nil
}

// expandSlice turns a systemd slice name into its path: a-b.slice lives in
// /a.slice/a-b.slice.
func expandSlice(slice string) (string, error) {
	name, ok := strings.CutSuffix(slice, ".slice")
	if !ok || strings.Contains(slice, "/") || name == "" {
		return "", fmt.Errorf("invalid slice name %q", slice)
	}
	if name == "-" {
		return "/", nil
	}
	var path, prefix string
	for _, part := range strings.Split(name, "-") {
		if part == "" {
			return "", fmt.Errorf("invalid slice name %q", slice)
		}
		path += "/" + prefix + part + ".slice"
		prefix += part + "-"
	}
	return path, nil
}

// hostHierarchies returns the mount points of the hierarchies to join:
// the unified one on a cgroup v2 host, the v1 controllers' otherwise (a
// hybrid host's v2 hierarchy has no controllers, so it is skipped).
func hostHierarchies() (dirs []string, unified bool, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupMount, &st); err != nil {
		return nil, false, fmt.Errorf("host cgroups: %w", err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return []string{cgroupMount}, true, nil
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, false, fmt.Errorf("host cgroups: %w", err)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, pf := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(pf) < 3 || pf[0] != "cgroup" {
			continue
		}
		for _, opt := range strings.Split(pf[2], ",") {
			for _, c := range v1Controllers {
				if opt == c && !seen[f[4]] {
					seen[f[4]] = true
					dirs = append(dirs, f[4])
				}
			}
		}
	}
	if len(dirs) == 0 {
		return nil, false, errors.New("host cgroups: no cgroup v1 controller (memory, cpu, cpuacct, pids, cpuset) and no cgroup2 mounted at " + cgroupMount)
	}
	return dirs, false, nil
}

// Join puts the calling process (the shim, before it starts
// QEMU) into the cgroup the spec names, in every hierarchy, creating it,
// with the spec's pids and cpuset limits. With a memory limit in the spec,
// the host cgroup is capped at the VM's memory plus QEMU's margin: the
// container's own limit holds in the guest. The CPU weight and bandwidth
// come later, once the VM is up (Limit).
func Join(dir string, spec *specs.Spec, memMiB int) error {
	rel, err := Path(spec)
	if err != nil || rel == "" {
		return err
	}
	roots, unified, err := hostHierarchies()
	if err != nil {
		return err
	}
	var rec hostCgroups
	for _, root := range roots {
		leaf := filepath.Join(root, rel)
		rec.Leaves = append(rec.Leaves, leaf)
		if procs, err := os.ReadFile(filepath.Join(leaf, "cgroup.procs")); err == nil {
			// Someone else's: runc refuses to share a cgroup, and its
			// processes must never die with this sandbox.
			if len(strings.TrimSpace(string(procs))) > 0 {
				return fmt.Errorf("host cgroup %s (linux.cgroupsPath) already holds processes: give the container a cgroup of its own", leaf)
			}
			rec.Kept = append(rec.Kept, leaf)
		}
		for p := filepath.Dir(rel); p != "/"; p = filepath.Dir(p) {
			if _, err := os.Stat(filepath.Join(root, p)); errors.Is(err, os.ErrNotExist) {
				rec.Parents = append(rec.Parents, filepath.Join(root, p))
			}
		}
	}
	// Recorded before anything is created: a crash half-way leaves
	// nothing delete does not know of.
	b, _ := json.Marshal(rec)
	if err := os.WriteFile(filepath.Join(dir, hostCgroupFile), b, 0o600); err != nil {
		return fmt.Errorf("host cgroups: %w", err)
	}
	res := spec.Linux.Resources
	limited := res != nil && res.Memory != nil && res.Memory.Limit != nil && *res.Memory.Limit > 0
	limit := strconv.FormatInt(int64(memMiB+hostMemoryMargin)<<20, 10)
	controllers := []string{"memory", "cpu", "pids"}
	if res != nil && res.CPU != nil && (res.CPU.Cpus != "" || res.CPU.Mems != "") {
		controllers = append(controllers, "cpuset")
	}
	pid := []byte(strconv.Itoa(os.Getpid()))
	for i, leaf := range rec.Leaves {
		if err := os.MkdirAll(leaf, 0o755); err != nil {
			return fmt.Errorf("host cgroup %s: %w", leaf, err)
		}
		if unified {
			// The controllers must be enabled on the way down, one by one
			// (one the host lacks must not keep the others off); a cgroup
			// with processes of its own refuses, and then so be it.
			for p := roots[i]; p != leaf; {
				for _, c := range controllers {
					os.WriteFile(filepath.Join(p, "cgroup.subtree_control"), []byte("+"+c), 0)
				}
				next, _ := filepath.Rel(p, leaf)
				p = filepath.Join(p, strings.SplitN(next, "/", 2)[0])
			}
		} else if _, err := os.Stat(filepath.Join(roots[i], "cpuset.cpus")); err == nil {
			if err := initCpuset(roots[i], leaf); err != nil {
				return err
			}
		}
		if err := write(leaf, joinSettings(res)); err != nil {
			return err
		}
		if limited {
			file := "memory.max"
			if !unified {
				file = "memory.limit_in_bytes"
			}
			if _, err := os.Stat(filepath.Join(leaf, file)); err == nil {
				if err := os.WriteFile(filepath.Join(leaf, file), []byte(limit), 0); err != nil {
					slog.Warn("host cgroup: cannot cap the VM's memory", "cgroup", leaf, "limit", limit, "error", err)
				}
			}
		}
		if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), pid, 0); err != nil {
			return fmt.Errorf("join host cgroup %s: %w", leaf, err)
		}
	}
	return nil
}

// Limit writes the spec's CPU weight and bandwidth into the host cgroups
// Join made: called once the VM is up and the container created, so that
// a small quota slows the container's run, not the VM's boot.
func Limit(dir string, spec *specs.Spec) error {
	rec, err := readHostCgroups(dir)
	if rec == nil || spec.Linux == nil {
		return err
	}
	_, unified, err := hostHierarchies()
	if err != nil {
		return err
	}
	for _, leaf := range rec.Leaves {
		if err := write(leaf, cpuSettings(spec.Linux.Resources, unified)); err != nil {
			return err
		}
	}
	return nil
}

// Remove removes the cgroups a sandbox's shim made, once its
// processes are gone: every leaf (waiting briefly for exiting processes to
// leave it), then the parents skiff created if nothing else uses them.
func Remove(dir string) error {
	rec, err := readHostCgroups(dir)
	if rec == nil {
		return err
	}
	var errs []error
	for _, leaf := range rec.Leaves {
		if slices.Contains(rec.Kept, leaf) {
			continue
		}
		start := time.Now()
		for killed := false; ; {
			err := unix.Rmdir(leaf)
			if err == nil || errors.Is(err, unix.ENOENT) {
				break
			}
			if !errors.Is(err, unix.EBUSY) || time.Since(start) > 5*time.Second {
				errs = append(errs, fmt.Errorf("remove host cgroup %s: %w", leaf, err))
				break
			}
			if !killed && time.Since(start) > time.Second {
				// What is left was started by the shim (a hook's daemon,
				// say) and dies with the sandbox, as runc's delete does.
				killCgroup(leaf)
				killed = true
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Recorded deepest first; a parent another sandbox uses stays.
	for _, p := range rec.Parents {
		unix.Rmdir(p)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return os.Remove(filepath.Join(dir, hostCgroupFile))
}

func killCgroup(dir string) {
	b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// Move puts pid (a pooled VM's QEMU, started before its
// sandbox was known) into the cgroups Join made for the sandbox.
func Move(dir string, pid int) error {
	rec, err := readHostCgroups(dir)
	if rec == nil {
		return err
	}
	for _, leaf := range rec.Leaves {
		if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("move the VM into host cgroup %s: %w", leaf, err)
		}
	}
	return nil
}

// readHostCgroups reads the sandbox's record of host cgroups: nil and no
// error when it has none.
func readHostCgroups(dir string) (*hostCgroups, error) {
	b, err := os.ReadFile(filepath.Join(dir, hostCgroupFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("host cgroups: %w", err)
	}
	var rec hostCgroups
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("host cgroups: %s: %w", filepath.Join(dir, hostCgroupFile), err)
	}
	return &rec, nil
}

// JoinRoot moves the calling process into the root cgroup of every
// cgroup hierarchy mounted. A pool filler does so before it starts VMs:
// started by a shim, it is in that sandbox's cgroups (and, under podman,
// conmon's), whose clean-up kills every process left in them. A pooled
// VM is moved into its own sandbox's cgroups when it is taken.
func JoinRoot() error {
	mounts, err := mountinfo.Read()
	if err != nil {
		return err
	}
	pid := []byte(strconv.Itoa(os.Getpid()))
	var errs []error
	for _, m := range mounts {
		// Only a mount of a hierarchy's root ("/") is its root cgroup.
		if (m.FSType != "cgroup" && m.FSType != "cgroup2") || m.Root != "/" {
			continue
		}
		if err := os.WriteFile(filepath.Join(m.Point, "cgroup.procs"), pid, 0); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
