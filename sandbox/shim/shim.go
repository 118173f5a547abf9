// Package shim is the host process that owns one sandbox: its VM (taken
// from the factory) and the one session with the VM's agent. It relays the
// stdio of the sandbox's containers, serves the verbs on its control
// socket (shimctl), forwards signals, and exits with the status of the
// container that made the sandbox. conmon and containerd's runc shim wait
// on its PID, so it lives exactly as long as that container's process.
//
// It runs in its own process (`skiff shim ID`), never in the CLI's: the
// verbs reach it only through shimctl. It may import the state store,
// shimctl, oci, the factory and the host plumbing; nothing imports it but
// the command that runs it.
package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-oci/skiff/agentclient"
	"github.com/skiff-oci/skiff/agentclient/protocol"
	"github.com/skiff-oci/skiff/config"
	"github.com/skiff-oci/skiff/hypervisor"
	"github.com/skiff-oci/skiff/internal/unixsock"
	"github.com/skiff-oci/skiff/sandbox/factory"
	"github.com/skiff-oci/skiff/sandbox/hostcgroup"
	"github.com/skiff-oci/skiff/sandbox/hostdisk"
	"github.com/skiff-oci/skiff/sandbox/hostfs"
	"github.com/skiff-oci/skiff/sandbox/hostnet"
	"github.com/skiff-oci/skiff/sandbox/oci"
	"github.com/skiff-oci/skiff/sandbox/shimctl"
	"github.com/skiff-oci/skiff/sandbox/state"
)

// exitVMLost is the status the shim exits with when the VM died under the
// container: what a shell reports for a process killed by SIGKILL.
const exitVMLost = 128 + int(syscall.SIGKILL)

// shimMemoryLimit is the shim's soft heap ceiling (GOMEMLIMIT); an idle
// shim uses a few MiB.
const shimMemoryLimit = 32 << 20

// vmStopTimeout bounds an orderly VMM quit before it is killed.
const vmStopTimeout = 3 * time.Second

// shim is one sandbox's host process.
type shim struct {
	root state.Root
	dir  state.SandboxDir
	cfg  *config.Config
	log  *slog.Logger

	factory *factory.Factory
	lease   *factory.Lease
	vm      *factory.VM
	// disk is the sandbox's scratch disk (its file is removed with the
	// sandbox's directory, or the pooled VM's).
	disk *hostdisk.Disk

	shutdown chan struct{} // closed when a verb asked the shim to stop the VM
	once     sync.Once

	// main is the container that made the sandbox: the shim exits with
	// its status.
	main *container
	// guestDirs is where the guest sees the sandbox's dirs/ share, and
	// under it, at pod/, a pod's other containers ("" if no pod).
	guestDirs string
	// vcpus and memMiB are the VM's size: a pod's container must fit.
	vcpus, memMiB int
	// machine is the VM's machine type; mainDisk says the sandbox's own
	// container has a rootfs disk (in slot 0 of a clone: rootdisk.go).
	machine  string
	mainDisk bool

	mu         sync.Mutex
	containers map[string]*container
	slots      [hypervisor.HotplugSlots]*slotDisk // rootdisk.go
}

// container is one container of the sandbox, as the shim serves it.
type container struct {
	dir   state.ContainerDir
	rec   *state.Container
	hooks *specs.Hooks // the bundle's OCI hooks, run on the host

	guestPID      int    // its process's PID in the guest
	terminal      bool   // its process has a terminal
	consoleSocket string // where its console goes; "" for the shim's own stdio
	outputs       sync.WaitGroup
}

func (c *container) id() string { return c.rec.ID }

// Options are what create passes to the shim beyond the ID.
type Options struct {
	ConsoleSocket string
	// VMM makes the VM; nil is QEMU.
	VMM factory.VMM
}

// Run is the body of `skiff shim ID`: the sandbox ID made by container ID.
// It reports "ok" or "error: ..." on ready once the container exists
// (stopped before its first instruction), and returns the status the
// process must exit with.
func Run(root state.Root, id string, ready *os.File, o Options) int {
	s := &shim{root: root, dir: root.Sandbox(id), log: slog.Default().With("id", id),
		shutdown: make(chan struct{}), containers: map[string]*container{}}
	// The shim's stdout and stderr are the container's: a reader that goes
	// away must not kill the shim with SIGPIPE.
	signal.Ignore(syscall.SIGPIPE)
	// What the guest sends is bounded where it is read (agentclient's
	// filter, capped logs); a soft ceiling on the heap makes the Go runtime
	// collect hard before a shim ever grows large, one per sandbox.
	debug.SetMemoryLimit(shimMemoryLimit)
	// Recorded by the shim itself: if create dies before it writes the
	// shim's PID into the sandbox's record, delete --force still finds it.
	os.WriteFile(s.dir.ShimPIDFile(), []byte(fmt.Sprint(os.Getpid())), 0o600)

	fail := func(err error) int {
		s.log.Error("create failed", "error", err)
		fmt.Fprintf(ready, "error: %s\n", err)
		ready.Close()
		s.teardown()
		return 1
	}
	if err := s.boot(id, o); err != nil {
		return fail(err)
	}
	ln, err := unixsock.Listen(s.dir.ShimSocket())
	if err != nil {
		return fail(fmt.Errorf("listen on %s: %w", s.dir.ShimSocket(), err))
	}
	defer ln.Close()
	go shimctl.Serve(ln, s)
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
	// Stopped from now on: the VM's teardown below takes seconds under
	// TCG, and a caller that saw the process exit (or killed it) must be
	// able to delete it meanwhile, as with runc.
	if err := touch(s.main.dir.ExitedMarker()); err != nil {
		s.log.Warn("mark the container exited", "error", err)
	}
	s.teardown()
	s.log.Debug("shim exits", "status", status)
	return status
}

// boot loads the sandbox, takes its VM from the factory and creates its
// first container, id.
func (s *shim) boot(id string, o Options) error {
	sb, err := s.dir.Read()
	if err != nil {
		return err
	}
	s.cfg = config.Default()
	if err := json.Unmarshal(sb.Config, s.cfg); err != nil {
		return fmt.Errorf("state of sandbox %s: config: %w", sb.ID, err)
	}
	vmm := o.VMM
	if vmm == nil {
		vmm = factory.QEMU
	}
	s.factory = factory.New(s.cfg, string(s.root), vmm)
	c, b, err := s.load(id, o.ConsoleSocket)
	if err != nil {
		return err
	}
	s.main = c
	role, _ := oci.PodRole(b.Spec)
	plan, scratch, targets, err := s.planFiles(id, b, func(b *oci.Bundle) (*hostfs.Plan, error) {
		return hostfs.PlanShares(string(s.dir), b, role == oci.RoleSandbox)
	})
	if err != nil {
		return err
	}
	// A pod's sandbox container (pause) gains nothing from a disk, and a
	// VM with one cannot come from a template: it keeps the share.
	if s.cfg.Storage.RootfsDisk && role != oci.RoleSandbox {
		if err := plan.UseRootDisk(b.Rootfs); err != nil {
			return err
		}
	}
	if err := plan.MountBinds(string(s.dir)); err != nil {
		return err
	}
	if b.Spec.Root.Readonly {
		if err := hostfs.CreateMountTargets(b.Rootfs, targets); err != nil {
			return err
		}
	}
	release, err := plan.TakeOverRootDisk()
	if err != nil {
		return err
	}
	ctx := context.Background()
	err = s.startVM(ctx, b.Spec, plan, scratch.Scratch != nil)
	release() // the VM holds the disk now, or never will
	if err != nil {
		return err
	}
	s.guestDirs = plan.GuestDirs()
	if err := s.createInGuest(ctx, c, plan, scratch, ""); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, agentclient.DefaultCallTimeout)
	defer cancel()
	if err := s.attachStdio(cctx, c); err != nil {
		return err
	}
	// Last: the CPU quota throttles this process and QEMU alike, and a
	// tenth of a CPU would make the set-up above take seconds.
	return hostcgroup.Limit(string(s.dir), b.Spec)
}

// load reads container id's record and bundle.
func (s *shim) load(id, consoleSocket string) (*container, *oci.Bundle, error) {
	d := s.root.Container(id)
	rec, err := d.Read()
	if err != nil {
		return nil, nil, err
	}
	b, err := oci.LoadBundle(rec.Bundle)
	if err != nil {
		return nil, nil, err
	}
	c := &container{dir: d, rec: rec, hooks: oci.HooksOf(b.Spec), consoleSocket: consoleSocket,
		terminal: b.Spec.Process != nil && b.Spec.Process.Terminal}
	s.mu.Lock()
	s.containers[id] = c
	s.mu.Unlock()
	return c, b, nil
}

// startVM gets the sandbox's VM from the factory, sized for spec, with
// the shares of plan, connected to spec's network.
func (s *shim) startVM(ctx context.Context, spec *specs.Spec, plan *hostfs.Plan, scratch bool) error {
	c, err := s.vmConfig(ctx, spec, plan)
	if err != nil {
		return err
	}
	if err := s.makeDisk(spec, &c); err != nil {
		return err
	}
	c.Disks = append(c.Disks, plan.Disks...)
	s.machine, s.mainDisk = c.Machine, len(plan.Disks) > 0
	s.vcpus, s.memMiB = c.VCPUs, c.MemoryMiB
	// QEMU, started below, inherits the shim's host cgroup.
	if err := hostcgroup.Join(string(s.dir), spec, c.MemoryMiB); err != nil {
		return err
	}
	model := s.cfg.Runtime.NetworkModel
	s.lease = s.factory.Reserve(factory.Request{Config: c, Dir: string(s.dir), Log: s.log,
		NICs: func() (int, error) { return hostnet.CountNICs(spec, model) }})
	nw, err := hostnet.Setup(string(s.dir), spec, model, s.lease.BringTap())
	if err != nil {
		return err
	}
	defer nw.CloseTaps() // the VMM holds its own copies once started
	if err := s.useLeaseDisk(); err != nil {
		return err
	}
	if scratch {
		// mkfs runs while the VM starts: the first container needs the
		// filesystem only when the agent mounts it.
		s.disk.FormatAsync()
	}
	if s.vm, err = s.lease.Start(ctx, nw.Devices(), plan, nw); err != nil {
		return err
	}
	s.log.Debug("VM started", "pid", s.vm.PID(), "from", s.vm.From)
	if req := nw.Request(); req != nil {
		cctx, cancel := context.WithTimeout(ctx, agentclient.DefaultCallTimeout)
		defer cancel()
		if err := s.vm.Agent.ConfigureNetwork(cctx, req); err != nil {
			return fmt.Errorf("configure the guest's network: %w", err)
		}
		s.log.Debug("guest network configured")
	}
	return nil
}

// createInGuest creates c in the guest, stopped before its first
// instruction, and runs the create-time hooks. A pod's container names
// its sandbox container, whose namespaces it joins.
func (s *shim) createInGuest(ctx context.Context, c *container, plan *hostfs.Plan, scratch *hostdisk.Plan, sandbox string) error {
	var req *protocol.Scratch
	if scratch.Scratch != nil {
		if err := s.disk.Ready(); err != nil {
			return err
		}
		r := *scratch.Scratch
		r.Size = s.disk.Size
		req = &r
	}
	cctx, cancel := context.WithTimeout(ctx, agentclient.DefaultCallTimeout)
	defer cancel()
	pid, err := s.vm.Agent.CreateContainer(cctx, &protocol.CreateContainerRequest{ID: c.id(), Spec: plan.Spec, Shares: plan.Guest,
		Scratch: req, Sandbox: sandbox})
	if err != nil {
		return fmt.Errorf("create container in the guest: %w", err)
	}
	c.guestPID = pid
	s.log.Debug("container created in the guest", "guestPid", pid)
	s.lease.Refill()
	creating := s.hookState(c, oci.StatusCreating)
	for _, k := range []struct {
		kind  string
		hooks []specs.Hook
	}{{"prestart", c.hooks.Prestart}, {"createRuntime", c.hooks.CreateRuntime}, {"createContainer", c.hooks.CreateContainer}} {
		if err := oci.RunHooks(k.kind, k.hooks, creating); err != nil {
			return err
		}
	}
	return nil
}

// wait returns the main container's exit status once its process exited
// and its output was relayed, or exitVMLost if the VM went away first.
func (s *shim) wait() int {
	status, err := s.waitProcess(s.main, "")
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
	waitTimeout(&s.main.outputs, 5*time.Second)
	return status
}

// waitProcess returns the exit status of c's process ("") or of its
// exec'd process execID, or an error if the VM went away first.
func (s *shim) waitProcess(c *container, execID string) (int, error) {
	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		st, err := s.vm.Agent.WaitProcess(context.Background(), c.id(), execID)
		done <- result{st, err}
	}()
	select {
	case r := <-done:
		return r.status, r.err
	case <-s.vm.Exited():
		return exitVMLost, errors.New("the VM exited")
	}
}

// lostVMReason says why the container's VM went away, for the log line
// containerd reports: QEMU's own exit (the signal that killed it, or its
// status and the end of its stderr) once it has exited, else what the
// agent channel said. QEMU's exit may trail the channel's end a little.
func (s *shim) lostVMReason(err error) string {
	select {
	case <-s.vm.Exited():
		if verr := s.vm.Wait(); verr != nil {
			return verr.Error()
		}
		return "qemu exited (the guest powered off or rebooted)"
	case <-time.After(2 * time.Second):
		return err.Error()
	}
}

// guestTail quotes the end of the guest console and of QEMU's stderr.
func (s *shim) guestTail() string {
	return factory.GuestTail(s.dir.ConsoleLog(), s.dir.QEMULog())
}

// teardown stops the VM and undoes what the sandbox holds on the host.
// Safe to call after a partial boot.
func (s *shim) teardown() {
	if s.vm != nil {
		quit := vmStopTimeout
		if s.drainGuest() {
			// The guest has synced and unmounted: nothing it holds is
			// needed, and QMP's quit is a few round trips more.
			quit = 0
		}
		s.vm.Agent.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*vmStopTimeout)
		if err := s.vm.Stop(ctx, quit); err != nil {
			s.log.Warn("stop VM", "error", err)
		}
		cancel()
	}
	if s.disk != nil {
		s.disk.Wait()
	}
	if s.lease != nil {
		s.lease.Release()
	}
	if err := hostfs.Unbind(string(s.dir)); err != nil {
		s.log.Warn("unmount shared binds", "error", err)
	}
	if err := hostnet.Remove(string(s.dir)); err != nil {
		s.log.Warn("remove network set-up", "error", err)
	}
	os.Remove(s.dir.ShimSocket())
}

// drainGuest asks a guest whose container ended on its own to shut down in
// order: its agent lets TCP send queues drain (the container's last bytes
// to a peer), syncs and unmounts disks before the VM is stopped. Not after
// a delete --force, nor when the VM is already gone. It reports whether
// the guest did.
func (s *shim) drainGuest() bool {
	select {
	case <-s.vm.Exited():
		return false
	case <-s.shutdown:
		return false
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := s.vm.Agent.Shutdown(ctx); err != nil {
		s.log.Debug("orderly guest shutdown", "error", err)
		return false
	}
	return true
}

// stopVM stops the VM on a verb's behalf: delete, or a failed
// startContainer hook.
func (s *shim) stopVM(ctx context.Context) {
	s.once.Do(func() { close(s.shutdown) })
	if s.vm != nil {
		s.vm.Stop(ctx, vmStopTimeout)
	}
}

// forwardSignals passes the signals a caller sends to the shim's PID on to
// the main container's process, as runc's foreground process does.
func (s *shim) forwardSignals() {
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	for sig := range ch {
		ctx, cancel := context.WithTimeout(context.Background(), agentclient.DefaultCallTimeout)
		err := s.vm.Agent.SignalProcess(ctx, protocol.SignalProcessRequest{ID: s.main.id(), Signal: int(sig.(syscall.Signal))})
		cancel()
		if err != nil {
			s.log.Warn("forward signal", "signal", sig, "error", err)
		}
	}
}

// hookState is the state document c's hooks get on stdin.
func (s *shim) hookState(c *container, status oci.Status) *oci.State {
	return &oci.State{OCIVersion: oci.Version, ID: c.id(), Status: status, PID: os.Getpid(),
		Bundle: c.rec.Bundle, Rootfs: c.rec.Rootfs, Created: c.rec.Created, Annotations: c.rec.Annotations}
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
