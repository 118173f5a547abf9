package container

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ProcessInfo is one process of a container as the guest sees it.
type ProcessInfo struct {
	PID, PPID, UID int
	Args           []string
}

// Processes lists the container's processes: its cgroup's members, or its
// init alone without a cgroup.
func (c *Container) Processes() ([]ProcessInfo, error) {
	var pids []int
	if c.cgroup != "" {
		var err error
		if pids, err = cgroupPIDs(c.cgroup); err != nil {
			return nil, fmt.Errorf("list processes: %w", err)
		}
	} else {
		select {
		case <-c.done:
		default:
			pids = []int{c.pid}
		}
	}
	sort.Ints(pids)
	var out []ProcessInfo
	for _, pid := range pids {
		if p, ok := readProcess(pid); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// readProcess reads what ps shows of pid; false if it has gone.
func readProcess(pid int) (ProcessInfo, bool) {
	p := ProcessInfo{PID: pid}
	dir := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return p, false
	}
	// comm may hold spaces and parentheses: fields follow the last ')'.
	lp, rp := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if lp < 0 || rp < lp {
		return p, false
	}
	comm := string(stat[lp+1 : rp])
	if f := strings.Fields(string(stat[rp+1:])); len(f) > 1 {
		p.PPID, _ = strconv.Atoi(f[1])
	}
	if status, err := os.ReadFile(dir + "/status"); err == nil {
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "Uid:"); ok {
				if f := strings.Fields(v); len(f) > 0 {
					p.UID, _ = strconv.Atoi(f[0])
				}
			}
		}
	}
	cmdline, _ := os.ReadFile(dir + "/cmdline")
	if args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00"); len(cmdline) > 0 {
		p.Args = args
	} else {
		p.Args = []string{"[" + comm + "]"}
	}
	return p, true
}

// freezeTimeout bounds the wait for the cgroup to report (un)frozen.
const freezeTimeout = 10 * time.Second

// Freeze freezes (or thaws) every process of the container through its
// cgroup and waits until the kernel reports it done.
func (c *Container) Freeze(frozen bool) error {
	if c.cgroup == "" {
		return errors.New("the guest has no cgroup2: pause is not possible")
	}
	select {
	case <-c.done:
		return errors.New("the container's process has exited")
	default:
	}
	want := "0"
	if frozen {
		want = "1"
	}
	if err := os.WriteFile(c.cgroup+"/cgroup.freeze", []byte(want), 0); err != nil {
		return fmt.Errorf("write cgroup.freeze: %w", err)
	}
	deadline := time.Now().Add(freezeTimeout)
	for {
		b, err := os.ReadFile(c.cgroup + "/cgroup.events")
		if err != nil {
			return fmt.Errorf("read cgroup.events: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if line == "frozen "+want {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the container's cgroup did not report frozen=%s within %v", want, freezeTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cgroupMount is where the agent mounts the guest's cgroup2 tree;
// cgroupRoot holds one cgroup per container in it.
const (
	cgroupMount = "/sys/fs/cgroup"
	cgroupRoot  = cgroupMount + "/skiff"
)

// makeCgroup creates the container's cgroup and opens it for
// CLONE_INTO_CGROUP, so the process is in it from its first instruction.
// Without cgroup2 it returns "" and -1: the container runs without one.
func makeCgroup(id string) (string, int) {
	dir := cgroupRoot + "/" + id
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", -1
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		os.Remove(dir)
		return "", -1
	}
	return dir, fd
}

// intoCgroup makes the container's cgroup and sets attr to fork into it;
// the caller closes attr.Sys.CgroupFD after the fork.
func intoCgroup(id string, attr *syscall.ProcAttr) string {
	dir, fd := makeCgroup(id)
	if fd >= 0 {
		attr.Sys.UseCgroupFD = true
		attr.Sys.CgroupFD = fd
	}
	return dir
}

// signalCgroup signals every process of a cgroup; SIGKILL goes through
// cgroup.kill, which also catches processes forking meanwhile.
func signalCgroup(dir string, sig unix.Signal) error {
	if sig == unix.SIGKILL {
		if err := os.WriteFile(dir+"/cgroup.kill", []byte("1"), 0); err == nil {
			return nil
		}
	}
	pids, err := cgroupPIDs(dir)
	if err != nil {
		return fmt.Errorf("list processes of %s: %w", dir, err)
	}
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && err != unix.ESRCH {
			return fmt.Errorf("signal %d to %d: %w", sig, pid, err)
		}
	}
	return nil
}

// cgroupPIDs lists the processes of a cgroup and of the cgroups below it:
// a container's init may sit in a leaf of its cgroup (see delegate), and
// a runtime nested in it makes cgroups of its own there.
func cgroupPIDs(dir string) ([]int, error) {
	var pids []int
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != dir && errors.Is(err, fs.ErrNotExist) {
				return nil // removed meanwhile
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p + "/cgroup.procs")
		if err != nil {
			if p != dir && errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids, err
}

// removeCgroupTree removes a cgroup and the cgroups below it, deepest
// first, and reports whether it is gone: not while a process is in it.
func removeCgroupTree(dir string) bool {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true
	}
	for _, e := range ents {
		if e.IsDir() {
			removeCgroupTree(filepath.Join(dir, e.Name()))
		}
	}
	err = os.Remove(dir)
	return err == nil || errors.Is(err, fs.ErrNotExist)
}

// initLeaf is the cgroup, below a delegated container's own, that holds
// its processes: cgroup v2 lets a cgroup hand controllers to its children
// only while no process is in it.
const initLeaf = "init"

// delegate hands the container's cgroup dir over to the container: its
// init (pid) moves into the leaf dir/init, and the controllers dir has
// are enabled for its children, so that a runtime or systemd inside can
// make cgroups with limits of their own. The init has already made its
// cgroup namespace (rooted at dir): it sees itself in /init.
func delegate(dir string, pid int) error {
	leaf := filepath.Join(dir, initLeaf)
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("make %s: %w", leaf, err)
	}
	if err := os.WriteFile(leaf+"/cgroup.procs", []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("move the container's init into %s: %w", leaf, err)
	}
	b, err := os.ReadFile(dir + "/cgroup.controllers")
	if err != nil {
		return err
	}
	var enable []string
	for _, c := range strings.Fields(string(b)) {
		enable = append(enable, "+"+c)
	}
	if len(enable) == 0 {
		return nil
	}
	if err := os.WriteFile(dir+"/cgroup.subtree_control", []byte(strings.Join(enable, " ")), 0); err != nil {
		return fmt.Errorf("enable %s for the container's own cgroups: %w", strings.Join(enable, " "), err)
	}
	return nil
}

// processCgroup is the guest cgroup directory pid is in, read from
// /proc/PID/cgroup (the agent is in the guest's cgroup namespace).
func processCgroup(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	p, ok := unifiedPath(string(b))
	if !ok {
		return "", fmt.Errorf("no cgroup2 entry in /proc/%d/cgroup", pid)
	}
	return filepath.Join(cgroupMount, p), nil
}

// unifiedPath is the cgroup2 path ("0::/...") of a /proc/PID/cgroup.
func unifiedPath(procCgroup string) (string, bool) {
	for _, line := range strings.Split(procCgroup, "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok && strings.HasPrefix(p, "/") {
			return p, true
		}
	}
	return "", false
}
