package container

import (
	"bytes"
	"errors"
	"fmt"
	"os"
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
		b, err := os.ReadFile(c.cgroup + "/cgroup.procs")
		if err != nil {
			return nil, fmt.Errorf("list processes: %w", err)
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
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

// cgroupRoot holds one cgroup per container in the guest's cgroup2 tree.
const cgroupRoot = "/sys/fs/cgroup/skiff"

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
	b, err := os.ReadFile(dir + "/cgroup.procs")
	if err != nil {
		return fmt.Errorf("list processes of %s: %w", dir, err)
	}
	for _, f := range strings.Fields(string(b)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err != nil {
			continue
		}
		if err := unix.Kill(pid, sig); err != nil && err != unix.ESRCH {
			return fmt.Errorf("signal %d to %d: %w", sig, pid, err)
		}
	}
	return nil
}
