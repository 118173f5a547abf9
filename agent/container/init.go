package container

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// readyPipe is the one *os.File for fdReady (a second one would close the
// descriptor when collected).
var readyPipe *os.File

// warnf tells the agent about something setup skipped; it goes on the
// ready pipe, never on the container's own stderr.
func warnf(format string, args ...any) {
	fmt.Fprintf(readyPipe, "warning: %s\n", strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " "))
}

// IsInit reports whether this process is a container init started by New.
func IsInit() bool { return startedAs(InitArg, initEnv) }

// startedAs tells whether the agent re-executed itself as this process:
// both the argument and the environment marker must be there, so that a
// stray argument alone never turns the guest's PID 1 into something else.
func startedAs(arg, env string) bool {
	if len(os.Args) < 2 || os.Args[1] != arg {
		return false
	}
	for _, e := range os.Environ() {
		if e == env {
			return true
		}
	}
	return false
}

// failSetup reports err to the agent on the ready pipe and exits.
func failSetup(err error) {
	fmt.Fprintf(readyPipe, "error: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
	os.Exit(1)
}

// readSetup decodes the JSON document the agent wrote on fdSpec (what it
// is, for errors) into v, or fails the setup.
func readSetup(v any, what string) {
	b, err := io.ReadAll(os.NewFile(fdSpec, what))
	if err != nil {
		failSetup(fmt.Errorf("read %s: %w", what, err))
	}
	if err := json.Unmarshal(b, v); err != nil {
		failSetup(fmt.Errorf("decode %s: %w", what, err))
	}
}

// Init is the container init's main: it never returns. Setup errors go back
// to the agent on the ready pipe; an exec failure after Start goes to the
// process's stderr with exit status 127.
func Init() {
	// Credentials, capabilities and no_new_privs are set per thread below
	// and must be those of the thread that calls execve.
	runtime.LockOSThread()
	for _, fd := range []int{fdSpec, fdReady, fdStart, fdConsole} {
		unix.CloseOnExec(fd)
	}
	readyPipe = os.NewFile(fdReady, "ready")
	var spec specs.Spec
	readSetup(&spec, "spec")
	path, env, err := setup(&spec)
	if err != nil {
		failSetup(err)
	}
	if _, err := readyPipe.Write([]byte("ready\n")); err != nil {
		os.Exit(1)
	}

	var one [1]byte
	if n, _ := os.NewFile(fdStart, "start").Read(one[:]); n != 1 {
		os.Exit(1) // the agent gave up on this container
	}
	err = unix.Exec(path, spec.Process.Args, env)
	fmt.Fprintf(os.Stderr, "skiff: exec %s: %v\n", spec.Process.Args[0], err)
	os.Exit(127)
}

// setup does everything between the fresh namespaces and the exec, and
// returns the program to exec and its environment.
func setup(spec *specs.Spec) (string, []string, error) {
	// Before the mounts: sysfs shows the network namespace of whoever
	// mounts it.
	if spec.Annotations[ownNetAnnotation] == "true" {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return "", nil, fmt.Errorf("new network namespace: %w", err)
		}
		if err := LoopbackUp(); err != nil {
			return "", nil, fmt.Errorf("loopback: %w", err)
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
	s := bufio.NewScanner(f)
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
