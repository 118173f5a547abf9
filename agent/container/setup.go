package container

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// setup does everything between the fresh namespaces and the exec, and
// returns the program to exec and its environment.
func setup(spec *specs.Spec) (string, []string, error) {
	// Before the mounts: sysfs shows the network namespace of whoever
	// mounts it.
	if err := useNetwork(spec.Annotations[ownNetAnnotation] == "true"); err != nil {
		return "", nil, err
	}
	// Before the mounts too: a cgroup2 mount shows the hierarchy from the
	// root of its mounter's cgroup namespace. The agent put this process
	// in the container's cgroup (at birth, or the zygote before it was
	// handed the container), which becomes that root: the container sees
	// its own limits at /sys/fs/cgroup, as runc gives on cgroup v2.
	if hasNamespace(spec, specs.CgroupNamespace) {
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return "", nil, fmt.Errorf("new cgroup namespace: %w", err)
		}
	}
	root := spec.Root.Path
	if err := setupRootfs(spec, root); err != nil {
		return "", nil, err
	}
	if spec.Hostname != "" {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return "", nil, fmt.Errorf("set hostname %q: %w", spec.Hostname, err)
		}
	}
	if spec.Domainname != "" {
		if err := unix.Setdomainname([]byte(spec.Domainname)); err != nil {
			return "", nil, fmt.Errorf("set domainname %q: %w", spec.Domainname, err)
		}
	}
	return prepareProcess(spec.Process)
}

// prepareProcess sets up what belongs to the process rather than to the
// container (terminal, rlimits, user, cwd), on this locked thread and in
// the container's mount namespace, and returns the program to exec and its
// environment. The container init and exec'd processes share it.
func prepareProcess(p *specs.Process) (string, []string, error) {
	if p.Terminal {
		if err := setupTerminal(p); err != nil {
			return "", nil, err
		}
	}
	for _, rl := range p.Rlimits {
		res, ok := rlimitByName[rl.Type]
		if !ok {
			return "", nil, fmt.Errorf("unknown rlimit %q", rl.Type)
		}
		// syscall.Setrlimit, not unix's: the Go runtime restores its saved
		// RLIMIT_NOFILE at exec unless told through this call.
		if err := syscall.Setrlimit(res, &syscall.Rlimit{Cur: rl.Soft, Max: rl.Hard}); err != nil {
			return "", nil, fmt.Errorf("set rlimit %s: %w", rl.Type, err)
		}
	}
	if p.OOMScoreAdj != nil {
		os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(*p.OOMScoreAdj)), 0)
	}
	env := p.Env
	if err := setUser(p); err != nil {
		return "", nil, err
	}
	if !hasEnv(env, "HOME") {
		env = append(append([]string(nil), env...), "HOME="+homeOf(p.User.UID))
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if err := os.Chdir(cwd); err != nil {
		return "", nil, fmt.Errorf("chdir to cwd (%q) set in config.json failed: %w", cwd, unwrapPath(err))
	}
	path, err := lookPath(p.Args[0], env)
	if err != nil {
		return "", nil, err
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return "", nil, fmt.Errorf("set no_new_privs: %w", err)
		}
	}
	return path, env, nil
}

// setUser switches to the spec's user on this (locked) thread, keeping the
// capabilities the spec asks for. Raw per-thread calls on purpose: the
// thread that execs is the one whose credentials count.
func setUser(p *specs.Process) error {
	u := p.User
	if u.Umask != nil {
		unix.Umask(int(*u.Umask))
	}
	caps := p.Capabilities
	if caps != nil {
		if err := dropBounding(caps.Bounding); err != nil {
			return err
		}
		if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("keep capabilities: %w", err)
		}
	}
	gids := make([]uint32, 0, len(u.AdditionalGids))
	gids = append(gids, u.AdditionalGids...)
	var gp uintptr
	if len(gids) > 0 {
		gp = uintptrOf(&gids[0])
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(gids)), gp, 0); e != 0 {
		return fmt.Errorf("setgroups %v: %w", gids, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(u.GID), uintptr(u.GID), uintptr(u.GID)); e != 0 {
		return fmt.Errorf("setgid %d: %w", u.GID, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(u.UID), uintptr(u.UID), uintptr(u.UID)); e != 0 {
		return fmt.Errorf("setuid %d: %w", u.UID, e)
	}
	if caps != nil {
		unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0)
		if err := setCaps(caps); err != nil {
			return err
		}
	}
	return nil
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			return true
		}
	}
	return false
}

// homeOf finds uid's home in the container's /etc/passwd, "/" otherwise.
func homeOf(uid uint32) string {
	f, err := os.Open("/etc/passwd")
	if err != nil {
		return "/"
	}
	defer f.Close()
	return homeIn(f, uid)
}

// homeIn is homeOf for a passwd file's content, which the image (anyone's)
// wrote: any bytes, lines of any length.
func homeIn(r io.Reader, uid uint32) string {
	s := bufio.NewScanner(r)
	for s.Scan() {
		fields := strings.Split(s.Text(), ":")
		if len(fields) >= 6 && fields[2] == strconv.FormatUint(uint64(uid), 10) && fields[5] != "" {
			return fields[5]
		}
	}
	return "/"
}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// lookPath resolves arg0 in the container's PATH (from env, not ours), with
// messages shaped like runc's so that callers that match on them still do.
func lookPath(arg0 string, env []string) (string, error) {
	if strings.Contains(arg0, "/") {
		if err := checkExecutable(arg0); err != nil {
			return "", fmt.Errorf("exec: %q: %w", arg0, unwrapPath(err))
		}
		return arg0, nil
	}
	path := defaultPath
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range strings.Split(path, ":") {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + arg0
		if checkExecutable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", arg0)
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return errors.New("is a directory")
	}
	if err := unix.Access(p, unix.X_OK); err != nil {
		return fmt.Errorf("permission denied")
	}
	return nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
