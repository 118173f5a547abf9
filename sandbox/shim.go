package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/agentclient"
	"github.com/skiff-oci/skiff/agentclient/protocol"
	"github.com/skiff-oci/skiff/config"
	"github.com/skiff-oci/skiff/hypervisor"
)

// The shim is the host process that stands for a container's process: it
// owns the VM and the agent channel, relays stdio, serves the other verbs on
// its socket, and exits with the container's exit status. conmon and
// containerd's runc shim wait on its PID, so it must live exactly as long as
// the container's process does.

// exitVMLost is the status the shim exits with when the VM died under the
// container: what a shell reports for a process killed by SIGKILL.
const exitVMLost = 128 + int(syscall.SIGKILL)

// vmStopTimeout bounds an orderly VMM quit before it is killed.
const vmStopTimeout = 3 * time.Second

type shim struct {
	root  string // the state root; the accelerator probe caches there
	d     Dir
	hooks *specs.Hooks // the bundle's OCI hooks, run on the host
	// releaseSpare closes the spare taps of a VM restored from a template.
	releaseSpare func()
	// pooled is the VM taken from the pool, if any (shimpool.go);
	// refillPool says the pool wants a filler once the container exists.
	pooled     *pooledVM
	refillPool bool
	st         *State
	cfg        *config.Config
	log        *slog.Logger

	vm       hypervisor.Hypervisor
	vmExited chan struct{}
	agent    *agentclient.Client

	outputs  sync.WaitGroup // stdout and stderr copies
	shutdown chan struct{}  // closed when a verb asked the shim to stop the VM
	once     sync.Once

	terminal      bool   // the container's process has a terminal
	consoleSocket string // where its console goes; "" for the shim's own stdio
}

// ShimOptions are what create passes to the shim beyond the ID.
type ShimOptions struct {
	ConsoleSocket string
}

// RunShim is the body of `skiff shim ID`. It reports "ok" or "error: ..." on
// ready once the container exists (stopped before its first instruction),
// and returns the status the process must exit with.
func RunShim(store *Store, id string, ready *os.File, o ShimOptions) int {
	d := store.Dir(id)
	s := &shim{root: store.Root, d: d, log: slog.Default().With("id", id), vmExited: make(chan struct{}), shutdown: make(chan struct{})}
	s.consoleSocket = o.ConsoleSocket
	// The shim's stdout and stderr are the container's: a reader that goes
	// away must not kill the shim with SIGPIPE.
	signal.Ignore(syscall.SIGPIPE)
	// Recorded by the shim itself: if create dies before it writes the
	// shim's PID into state.json, delete --force still finds it here.
	os.WriteFile(d.ShimPIDFile(), []byte(fmt.Sprint(os.Getpid())), 0o600)

	err := s.boot()
	if err != nil {
		s.log.Error("create failed", "error", err)
		fmt.Fprintf(ready, "error: %s\n", err)
		ready.Close()
		s.teardown()
		return 1
	}
	ln, err := net.Listen("unix", d.ShimSocket())
	if err != nil {
		err = fmt.Errorf("listen on %s: %w", d.ShimSocket(), err)
		fmt.Fprintf(ready, "error: %s\n", err)
		ready.Close()
		s.teardown()
		return 1
	}
	defer ln.Close()
	go s.serve(ln)
	go s.forwardSignals()

	// Nobody left to read this means create died before it could record
	// the container: it must not run unrecorded.
	if _, err := fmt.Fprintf(ready, "ok\n"); err != nil {
		s.log.Error("create went away before the container was recorded", "error", err)
		s.teardown()
		return 1
	}
	ready.Close()

	status := s.wait()
	s.log.Debug("container exited", "status", status)
	s.teardown()
	s.log.Debug("shim exits", "status", status)
	return status
}

// boot starts the VM, waits for the agent, and creates the container.
func (s *shim) boot() error {
	st, err := s.d.read()
	if err != nil {
		return err
	}
	s.st = st
	s.cfg = config.Default()
	if err := json.Unmarshal(st.Config, s.cfg); err != nil {
		return fmt.Errorf("state of %s: config: %w", st.ID, err)
	}
	b, err := LoadBundle(st.Bundle)
	if err != nil {
		return err
	}
	s.terminal = b.Spec.Process != nil && b.Spec.Process.Terminal
	s.hooks = hooksOf(b.Spec)
	plan, err := planShares(s.d, b)
	if err != nil {
		return err
	}
	if err := plan.mountBinds(s.d); err != nil {
		return err
	}
	if b.Spec.Root.Readonly {
		if err := createMountTargets(b.Rootfs, b.Spec.Mounts); err != nil {
			return err
		}
	}

	h := s.cfg.Hypervisor
	ctx := context.Background()
	base, why, err := baseVMConfig(ctx, s.cfg, s.root)
	if err != nil {
		return err
	}
	s.log.Debug("accelerator", "accel", base.Accel, "why", why)
	base.VCPUs, base.MemoryMiB = vmSize(&s.cfg.Hypervisor, b.Spec)
	// QEMU, started below, inherits the shim's host cgroup.
	if err := joinHostCgroup(s.d, b.Spec, base.MemoryMiB); err != nil {
		return err
	}

	c := hypervisor.Config{
		Name:         "skiff-" + st.ID,
		Binary:       base.Binary,
		Kernel:       base.Kernel,
		Initrd:       base.Initrd,
		KernelParams: base.KernelParams,
		Machine:      base.Machine,
		Accel:        base.Accel,
		VCPUs:        base.VCPUs,
		MemoryMiB:    base.MemoryMiB,
		Shares:       plan.Host,
		AgentSocket:  s.d.AgentSocket(),
		QMPSocket:    s.d.QMPSocket(),
		ConsoleLog:   s.d.ConsoleLog(),
		StderrLog:    s.d.QEMULog(),
		PIDFile:      s.d.QEMUPIDFile(),
	}
	s.pooled = s.takePooled(c, b.Spec)
	var bring bringTap
	if s.pooled != nil {
		bring = s.pooled.bringTap
	}
	nw, err := setupNetworkWith(s.d, b.Spec, s.cfg.Runtime.NetworkModel, bring)
	if err != nil {
		return err
	}
	defer nw.closeTaps() // the VMM holds its own copies once started
	c.NetDevices = nw.vmDevices()

	var (
		vm       hypervisor.Hypervisor
		agent    *agentclient.Client // a restored VM's, reseeded
		restored bool
	)
	if s.pooled != nil {
		vm, err = s.adopt(s.pooled, c, plan)
	} else {
		vm, agent, restored, err = s.startVM(ctx, c)
	}
	if err != nil {
		return fmt.Errorf("start VM: %w%s", err, s.guestTail())
	}
	s.vm = vm
	s.log.Debug("VM started", "pid", vm.PID())
	go func() {
		vm.Wait()
		close(s.vmExited)
	}()

	bootCtx, cancel := context.WithTimeout(ctx, h.BootTimeoutDuration())
	defer cancel()
	go func() {
		select {
		case <-s.vmExited:
			cancel()
		case <-bootCtx.Done():
		}
	}()
	switch {
	case s.pooled != nil:
		agent = s.pooled.agent // answered when it was taken
		s.agent = agent
	case agent != nil:
		// Restored and reseeded: the template's agent version was
		// checked when it was built.
		s.agent = agent
	default:
		if agent, err = agentclient.Dial(bootCtx, s.d.AgentSocket()); err == nil {
			s.agent = agent
			_, err = agent.Ping(bootCtx)
			s.log.Debug("agent answered")
		}
	}
	if restored || s.pooled != nil {
		// A pooled VM was reseeded when it was restored.
		nw.restoredNICs(templateMAC)
	}
	if err != nil {
		select {
		case <-s.vmExited:
			return fmt.Errorf("the VM exited while booting%s", s.guestTail())
		default:
		}
		if bootCtx.Err() != nil {
			return fmt.Errorf("the guest did not answer within %ds (hypervisor.boot_timeout)%s", h.BootTimeout, s.guestTail())
		}
		return fmt.Errorf("guest agent: %w%s", err, s.guestTail())
	}

	cctx, ccancel := context.WithTimeout(ctx, agentclient.DefaultCallTimeout)
	defer ccancel()
	if err := nw.configureGuest(cctx, agent); err != nil {
		return err
	}
	s.log.Debug("guest network configured")
	pid, err := agent.CreateContainer(cctx, &protocol.CreateContainerRequest{ID: st.ID, Spec: plan.Spec, Shares: plan.Guest})
	if err != nil {
		return fmt.Errorf("create container in the guest: %w", err)
	}
	s.st.GuestPID = pid
	s.log.Debug("container created in the guest", "guestPid", pid)
	if s.refillPool {
		s.refill()
	}
	// The container exists, stopped before its first instruction: the
	// create-time hooks run now, on the host.
	creating := s.hookState(StatusCreating)
	for _, k := range []struct {
		kind  string
		hooks []specs.Hook
	}{{"prestart", s.hooks.Prestart}, {"createRuntime", s.hooks.CreateRuntime}, {"createContainer", s.hooks.CreateContainer}} {
		if err := runHooks(k.kind, k.hooks, creating); err != nil {
			return err
		}
	}
	return s.attachStdio(cctx)
}

// attachStdio connects the shim's own stdio, which are the fds the caller
// of create passed, to the container process's.
func (s *shim) attachStdio(ctx context.Context) error {
	if s.terminal {
		return s.attachTerminal(ctx)
	}
	// The three streams are opened at once: their round trips overlap.
	var (
		streams [3]net.Conn
		errs3   [3]error
		wg      sync.WaitGroup
	)
	for i, which := range []string{protocol.Stdin, protocol.Stdout, protocol.Stderr} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			streams[i], errs3[i] = s.agent.OpenStdio(ctx, s.st.ID, "", which)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs3[:]...); err != nil {
		for _, c := range streams {
			if c != nil {
				c.Close()
			}
		}
		return err
	}
	in, out, errs := streams[0], streams[1], streams[2]
	// Nobody waits for the stdin copy: it may block reading our stdin
	// forever, and it ends with the process anyway.
	go func() {
		io.Copy(in, os.Stdin)
		in.Close()
	}()
	for _, c := range []struct {
		dst io.Writer
		src net.Conn
	}{{os.Stdout, out}, {os.Stderr, errs}} {
		s.outputs.Add(1)
		go func() {
			defer s.outputs.Done()
			io.Copy(c.dst, c.src)
			c.src.Close()
		}()
	}
	return nil
}

// wait returns the container's exit status once its process exited and
// its output was relayed, or exitVMLost if the VM went away first.
func (s *shim) wait() int {
	status, err := s.waitProcess("")
	if err != nil {
		select {
		case <-s.shutdown:
			s.log.Debug("container stopped by delete")
		default:
			s.log.Error("lost the container's VM: " + s.lostVMReason(err) + s.guestTail())
		}
		status = exitVMLost
	}
	// Output may still be in flight after the exit status arrived; a VM
	// that died closes the streams, so this wait is bounded in practice.
	waitTimeout(&s.outputs, 5*time.Second)
	return status
}

// waitProcess returns the exit status of the container's process ("") or
// exec'd process execID, or an error if the VM went away first.
func (s *shim) waitProcess(execID string) (int, error) {
	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		st, err := s.agent.WaitProcess(context.Background(), s.st.ID, execID)
		done <- result{st, err}
	}()
	select {
	case r := <-done:
		return r.status, r.err
	case <-s.vmExited:
		return exitVMLost, errors.New("the VM exited")
	}
}

// teardown stops the VM and undoes host mounts. Safe to call after a
// partial boot.
func (s *shim) teardown() {
	if s.agent != nil {
		s.drainGuest()
		s.agent.Close()
	}
	if s.vm != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*vmStopTimeout)
		if err := s.vm.Stop(ctx, vmStopTimeout); err != nil {
			s.log.Warn("stop VM", "error", err)
		}
		cancel()
	}
	if s.releaseSpare != nil {
		s.releaseSpare()
	}
	if s.pooled != nil {
		if err := removeMemberOf(s.d); err != nil {
			s.log.Warn("remove pooled VM", "error", err)
		}
		s.pooled.lock.Close()
	}
	for _, share := range []string{s.d.DirsDir(), s.d.FilesDir()} {
		if err := unmountUnder(share); err != nil {
			s.log.Warn("unmount shared binds", "error", err)
		}
	}
	if err := removeNetwork(s.d); err != nil {
		s.log.Warn("remove network set-up", "error", err)
	}
	os.Remove(s.d.ShimSocket())
}

// serve answers the verbs on the control socket.
func (s *shim) serve(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go s.handle(conn)
	}
}

func (s *shim) handle(conn net.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(ctlTimeout))
	var req ctlRequest
	fr := &fdReader{conn: conn.(*net.UnixConn)}
	if err := protocol.ReadFrame(fr, &req); err != nil {
		closeFiles(fr.fds)
		return
	}
	if req.Op == ctlExec || req.Op == ctlDebugConsole {
		s.exec(conn, req, fr.fds)
		return
	}
	closeFiles(fr.fds)
	ctx, cancel := context.WithTimeout(context.Background(), agentclient.DefaultCallTimeout)
	defer cancel()
	var err error
	switch req.Op {
	case ctlStart:
		if err = runHooks("startContainer", s.hooks.StartContainer, s.hookState(StatusCreated)); err != nil {
			// The spec: a failed startContainer hook stops the container.
			s.once.Do(func() { close(s.shutdown) })
			go s.vm.Stop(context.Background(), vmStopTimeout)
			break
		}
		err = s.agent.StartContainer(ctx, s.st.ID)
		if err == nil {
			err = touch(s.d.path(startedMarker))
		}
		if err == nil {
			warnHooks("poststart", s.hooks.Poststart, s.hookState(StatusRunning))
		}
	case ctlKill:
		err = s.agent.SignalProcess(ctx, protocol.SignalProcessRequest{ID: s.st.ID, Signal: req.Signal, All: req.All})
	case ctlPause, ctlResume, ctlPs:
		protocol.WriteFrame(conn, s.containerOp(ctx, req.Op))
		return
	case ctlUpdate, ctlStats:
		protocol.WriteFrame(conn, s.resourceOp(ctx, req))
		return
	case ctlShutdown:
		// Answer first: the caller waits for this process to exit next.
		protocol.WriteFrame(conn, ctlResponse{})
		s.once.Do(func() { close(s.shutdown) })
		if s.vm != nil {
			s.vm.Stop(ctx, vmStopTimeout)
		}
		return
	default:
		err = fmt.Errorf("unknown request %q", req.Op)
	}
	rsp := ctlResponse{}
	if err != nil {
		rsp.Error = err.Error()
	}
	protocol.WriteFrame(conn, rsp)
}

// forwardSignals passes the signals a caller sends to the shim's PID on to
// the container's process, as runc's foreground process does.
func (s *shim) forwardSignals() {
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	for sig := range ch {
		ctx, cancel := context.WithTimeout(context.Background(), agentclient.DefaultCallTimeout)
		err := s.agent.SignalProcess(ctx, protocol.SignalProcessRequest{ID: s.st.ID, Signal: int(sig.(syscall.Signal))})
		cancel()
		if err != nil {
			s.log.Warn("forward signal", "signal", sig, "error", err)
		}
	}
}

// guestTail quotes the end of the guest console and of QEMU's stderr, so
// that a failed boot explains itself.
func (s *shim) guestTail() string {
	var b strings.Builder
	for _, f := range []struct{ name, path string }{{"guest console", s.d.ConsoleLog()}, {"qemu", s.d.QEMULog()}} {
		if t := consoleTail(f.path, 12); t != "" {
			fmt.Fprintf(&b, "\n--- last lines of %s (%s) ---\n%s", f.name, f.path, t)
		}
	}
	return b.String()
}

func tailLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 64<<10 {
		b = b[len(b)-64<<10:]
	}
	lines := strings.Split(strings.TrimRight(strings.ReplaceAll(string(b), "\r", ""), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func touch(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// hookState is the state document hooks get on stdin.
func (s *shim) hookState(status Status) *OCIState {
	return &OCIState{OCIVersion: ociVersion, ID: s.st.ID, Status: status, PID: os.Getpid(),
		Bundle: s.st.Bundle, Rootfs: s.st.Rootfs, Created: s.st.Created, Annotations: s.st.Annotations}
}

// drainGuest asks a guest whose container ended on its own to shut down in
// order: its agent lets TCP send queues drain (the container's last bytes
// to a peer), syncs and unmounts before the VM is stopped. Not after a
// delete --force, nor when the VM is already gone.
func (s *shim) drainGuest() {
	select {
	case <-s.vmExited:
		return
	case <-s.shutdown:
		return
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := s.agent.Shutdown(ctx); err != nil {
		s.log.Debug("orderly guest shutdown", "error", err)
	}
}
