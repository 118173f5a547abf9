package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/skiff-oci/skiff/internal/tty"
	"github.com/skiff-oci/skiff/sandbox/oci"
	"github.com/skiff-oci/skiff/sandbox/shimctl"
	"github.com/skiff-oci/skiff/sandbox/state"
	"golang.org/x/sys/unix"
)

// ExecOptions are the inputs of Exec, as runc's exec takes them.
type ExecOptions struct {
	// ProcessFile is a process.json: the whole process, as runc's
	// --process. Without it the process is the container's own from
	// config.json, changed by the fields below.
	ProcessFile    string
	Args           []string
	Env            []string
	Cwd            string
	User           string // UID[:GID]
	AdditionalGids []int64
	Tty            bool
	Caps           []string
	NoNewPrivs     *bool

	Detach        bool
	PIDFile       string
	ConsoleSocket string
	// HelperArgs re-invoke this binary with the caller's global flags;
	// a detached exec appends "exec-attach" and the ID.
	HelperArgs []string
	// Stdin, Stdout and Stderr are handed to the shim, which relays them
	// for the process (also after a detached exec has returned).
	Stdin, Stdout, Stderr *os.File
	// Signals received while attached are passed on to the process.
	Signals <-chan os.Signal
}

// Exec runs a process in a created or running container and, unless
// detached, waits for it and returns its exit status (128+N when killed by
// signal N).
func (r *Runtime) Exec(ctx context.Context, id string, o ExecOptions) (int, error) {
	c, err := r.load(id)
	if err != nil {
		return 0, err
	}
	// Not held while the process runs: kill and delete must still work.
	status := c.Status()
	c.done()
	if err := state.CanExec(id, status); err != nil {
		return 0, err
	}
	p, err := execProcess(c.rec, o)
	if err != nil {
		return 0, err
	}
	if err := checkConsole(p.Terminal, o.ConsoleSocket, !o.Detach); err != nil {
		return 0, err
	}
	consoleSocket, err := absConsoleSocket(o.ConsoleSocket)
	if err != nil {
		return 0, err
	}
	execID, err := newExecID()
	if err != nil {
		return 0, err
	}
	req := execRequest{Method: shimctl.MethodExec, ExecRequest: shimctl.ExecRequest{ExecID: execID, Process: p, ConsoleSocket: consoleSocket}}
	var files []*os.File
	if consoleSocket == "" {
		files = []*os.File{o.Stdin, o.Stdout, o.Stderr}
		for i, f := range files {
			if f == nil {
				return 0, fmt.Errorf("exec: stdio descriptor %d is missing", i)
			}
		}
		if p.Terminal && !o.Detach && tty.IsTerminal(o.Stdin) {
			// The guest's terminal starts at the caller's size, so that the
			// process never sees it unset.
			if p.ConsoleSize == nil {
				p.ConsoleSize = tty.Size(o.Stdin)
			}
			restore, err := tty.Raw(o.Stdin)
			if err != nil {
				return 0, err
			}
			defer restore()
		}
	}

	if o.Detach {
		return 0, detachExec(id, req, o)
	}
	return attachExec(ctx, c.sandbox.shim(), id, req, files, o.Signals, func(int) error {
		if o.PIDFile == "" {
			return nil
		}
		// runc writes the exec'd process's PID; on the host, the process
		// standing for it is this one.
		return writePIDFile(o.PIDFile, os.Getpid())
	})
}

// execRequest is an exec as the exec helper gets it: the method (Exec or
// DebugConsole) and its request.
type execRequest struct {
	Method string `json:"method"`
	shimctl.ExecRequest
}

// attachExec asks the shim to run req with files as the process's stdio,
// calls started once the process runs, passes signals on to it, and
// returns its exit status.
func attachExec(ctx context.Context, shim shimctl.Client, id string, req execRequest, files []*os.File, signals <-chan os.Signal, started func(pid int) error) (int, error) {
	x, err := shim.Exec(ctx, req.Method, id, req.ExecRequest, files)
	if err != nil {
		return 0, fmt.Errorf("exec in container %s: %w", id, err)
	}
	if err := started(x.PID); err != nil {
		x.Close()
		return 0, err
	}
	status, err := x.Wait(signals)
	if err != nil {
		return 0, fmt.Errorf("exec in container %s: %w", id, err)
	}
	return status, nil
}

// Detached, the exec'd process still gets a host process standing for it,
// as runc's has one: a helper (`skiff exec-attach`) that attaches as a
// foreground exec would and exits with the process's status. Its PID goes
// to --pid-file; conmon, a child subreaper, waits on it once exec returns.
const (
	execHelperVerb = "exec-attach"
	execHelperReq  = 3 // the helper reads the request here
	execHelperOK   = 4 // and reports "ok" or "error: ..." here
)

func detachExec(id string, req execRequest, o ExecOptions) error {
	if len(o.HelperArgs) == 0 {
		return errors.New("exec --detach: no way to start the exec helper")
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	reqR, reqW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer reqW.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		reqR.Close()
		return err
	}
	defer readyR.Close()
	args := append(append([]string{}, o.HelperArgs[1:]...), execHelperVerb, id)
	cmd := exec.Command(o.HelperArgs[0], args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, o.Stdout, o.Stderr
	cmd.ExtraFiles = []*os.File{reqR, readyW}
	// Its own session: the caller's terminal signals are not its business,
	// and it outlives exec.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	reqR.Close()
	readyW.Close()
	if err != nil {
		return fmt.Errorf("exec --detach: start helper: %w", err)
	}
	go func() {
		reqW.Write(body)
		reqW.Close()
	}()
	msg, rerr := readReady(readyR)
	if rerr != nil || msg != "ok" {
		cmd.Process.Kill()
		cmd.Wait()
		if rerr != nil || msg == "" {
			return errors.New("exec --detach: the helper exited before the process started (see --log)")
		}
		return errors.New(strings.TrimPrefix(msg, "error: "))
	}
	if o.PIDFile != "" {
		if err := writePIDFile(o.PIDFile, cmd.Process.Pid); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return err
		}
	}
	// Not waited for: it is the caller's now (or init's).
	return cmd.Process.Release()
}

// ExecHelper is the body of `skiff exec-attach ID`: it reads the request
// exec --detach prepared, runs it as a foreground exec on its own stdio
// (the caller's), reports the start, and returns the process's status.
func (r *Runtime) ExecHelper(ctx context.Context, id string, signals <-chan os.Signal) (int, error) {
	unix.CloseOnExec(execHelperReq)
	unix.CloseOnExec(execHelperOK)
	ready := os.NewFile(execHelperOK, "ready")
	reported := false
	report := func(msg string) {
		if !reported {
			reported = true
			fmt.Fprintln(ready, msg)
			ready.Close()
		}
	}
	status, err := r.execHelper(ctx, id, signals, func(int) error {
		report("ok")
		return nil
	})
	if err != nil {
		report("error: " + strings.ReplaceAll(err.Error(), "\n", " "))
	}
	return status, err
}

func (r *Runtime) execHelper(ctx context.Context, id string, signals <-chan os.Signal, started func(int) error) (int, error) {
	b, err := io.ReadAll(os.NewFile(execHelperReq, "request"))
	if err != nil {
		return 0, fmt.Errorf("exec helper: read request: %w", err)
	}
	var req execRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return 0, fmt.Errorf("exec helper: bad request: %w", err)
	}
	c, err := r.read(r.root.Container(id))
	if err != nil {
		return 0, err
	}
	var files []*os.File
	if req.ConsoleSocket == "" {
		files = []*os.File{os.Stdin, os.Stdout, os.Stderr}
	}
	return attachExec(ctx, c.sandbox.shim(), id, req, files, signals, started)
}

func newExecID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "exec-" + hex.EncodeToString(b), nil
}

// execProcess builds the process to exec as runc does: process.json as it
// is, or the container's own process with the flags' changes.
func execProcess(st *state.Container, o ExecOptions) (*specs.Process, error) {
	if o.ProcessFile != "" {
		return processFile(o.ProcessFile)
	}
	if len(o.Args) == 0 {
		return nil, errors.New("exec: no command given: exec ID COMMAND [ARGS...], or --process FILE")
	}
	b, err := oci.LoadBundle(st.Bundle)
	if err != nil {
		return nil, fmt.Errorf("exec: the container's config: %w", err)
	}
	p := *b.Spec.Process
	p.Args = o.Args
	p.Terminal = o.Tty
	p.ConsoleSize = nil
	p.Env = append(append([]string(nil), p.Env...), o.Env...)
	if o.Cwd != "" {
		if !filepath.IsAbs(o.Cwd) {
			return nil, fmt.Errorf("exec: --cwd %q must be an absolute path", o.Cwd)
		}
		p.Cwd = o.Cwd
	}
	if err := applyUser(&p, o); err != nil {
		return nil, err
	}
	if o.NoNewPrivs != nil {
		p.NoNewPrivileges = *o.NoNewPrivs
	}
	applyCaps(&p, o.Caps)
	return &p, nil
}

// processFile reads a process.json (runc's exec --process): the whole
// process, as it is.
func processFile(path string) (*specs.Process, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("exec: read process file: %w", err)
	}
	var p specs.Process
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("exec: malformed process file %s: %w", path, err)
	}
	if len(p.Args) == 0 || p.Args[0] == "" {
		return nil, fmt.Errorf("exec: process file %s: args must not be empty", path)
	}
	if p.Cwd != "" && !filepath.IsAbs(p.Cwd) {
		return nil, fmt.Errorf("exec: process file %s: cwd %q must be absolute", path, p.Cwd)
	}
	return &p, nil
}

// applyUser sets --user UID[:GID] and --additional-gids.
func applyUser(p *specs.Process, o ExecOptions) error {
	if o.User != "" {
		uid, gid, hasGID := strings.Cut(o.User, ":")
		n, err := strconv.ParseUint(uid, 10, 32)
		if err != nil {
			return fmt.Errorf("exec: --user %q: want UID[:GID], numeric", o.User)
		}
		p.User.UID = uint32(n)
		if hasGID {
			n, err := strconv.ParseUint(gid, 10, 32)
			if err != nil {
				return fmt.Errorf("exec: --user %q: want UID[:GID], numeric", o.User)
			}
			p.User.GID = uint32(n)
		}
	}
	for _, g := range o.AdditionalGids {
		p.User.AdditionalGids = append(p.User.AdditionalGids, uint32(g))
	}
	return nil
}

// applyCaps adds --cap capabilities to the process's bounding, effective
// and permitted sets, as runc does.
func applyCaps(p *specs.Process, caps []string) {
	if len(caps) == 0 {
		return
	}
	c := specs.LinuxCapabilities{}
	if p.Capabilities != nil {
		c = *p.Capabilities
	}
	for _, name := range caps {
		name = strings.ToUpper(name)
		if !strings.HasPrefix(name, "CAP_") {
			name = "CAP_" + name
		}
		c.Bounding = append(c.Bounding, name)
		c.Effective = append(c.Effective, name)
		c.Permitted = append(c.Permitted, name)
	}
	p.Capabilities = &c
}
