// Package fakevm stands in for QEMU and the guest agent in unit tests of
// the factory and the shim, without root and without QEMU. Each VM is a
// real process (sleep), so that PIDs, pidfiles and kills are real; its
// agent is served in the test's process on the VM's agent socket, speaking
// the real protocol (yamux, frames) with canned answers. Only tests import
// it; it must never stand in for QEMU in an end-to-end test.
package fakevm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/skiff-oci/skiff/agentclient/protocol"
	"github.com/skiff-oci/skiff/config"
	"github.com/skiff-oci/skiff/hypervisor"
	"github.com/skiff-oci/skiff/internal/unixsock"
)

// Config is skiff's configuration for sandboxes on fake VMs: the VMM,
// kernel and initrd are files in dir (the factory keys templates by them),
// TCG, a short boot timeout, the factory in dir.
func Config(dir string, template bool, cache int) *config.Config {
	cfg := config.Default()
	for _, p := range []*string{&cfg.Hypervisor.Path, &cfg.Hypervisor.Kernel, &cfg.Hypervisor.Initrd} {
		*p = filepath.Join(dir, filepath.Base(*p)+"-fake")
		os.WriteFile(*p, []byte("x"), 0o700)
	}
	cfg.Hypervisor.Accel = "tcg"
	cfg.Hypervisor.BootTimeout = 5
	cfg.Factory.Dir = filepath.Join(dir, "factory")
	cfg.Factory.Template, cfg.Factory.Cache = template, cache
	return cfg
}

// VMM makes fake VMs. Its counters say what the factory asked for.
type VMM struct {
	// Broken VMs never answer and exit soon after their start: a guest
	// that crashes while it boots.
	Broken bool

	mu                        sync.Mutex
	Started, Restored, Adopts int
	vms                       map[string]*VM // by pidfile
}

// New returns a VM of c, not started.
func (v *VMM) New(c hypervisor.Config) (hypervisor.Hypervisor, error) {
	return &VM{cfg: c, vmm: v, done: make(chan struct{}), procs: map[string]*process{}}, nil
}

// Adopt takes over the VM started with c's pidfile.
func (v *VMM) Adopt(c hypervisor.Config) (hypervisor.Hypervisor, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	vm := v.vms[c.PIDFile]
	if vm == nil || !vm.running() {
		return nil, fmt.Errorf("adopt: no VM with pidfile %s", c.PIDFile)
	}
	v.Adopts++
	return vm, nil
}

// Running is the PID of the live VM whose pidfile is pidFile, 0 if none.
func (v *VMM) Running(pidFile string) int {
	v.mu.Lock()
	vm := v.vms[pidFile]
	v.mu.Unlock()
	if vm == nil || !vm.running() {
		return 0
	}
	return vm.PID()
}

// Kill kills the VM whose pidfile is pidFile.
func (v *VMM) Kill(pidFile string) error {
	v.mu.Lock()
	vm := v.vms[pidFile]
	v.mu.Unlock()
	if vm != nil {
		vm.Crash()
	}
	return nil
}

// VM is one fake VM: a sleeping process and an agent.
type VM struct {
	cfg  hypervisor.Config
	vmm  *VMM
	cmd  *exec.Cmd
	ln   net.Listener
	done chan struct{}
	mu   sync.Mutex
	// procs are the guest's processes by container ID and exec ID.
	procs map[string]*process
}

type process struct {
	status int
	exited chan struct{}
	once   sync.Once
}

func (p *process) exit(status int) {
	p.once.Do(func() {
		p.status = status
		close(p.exited)
	})
}

// Start starts the process and, unless the VM waits for a saved state,
// its agent.
func (vm *VM) Start(ctx context.Context) error {
	c := vm.cfg
	if c.MemoryFile != "" && c.MemoryShared {
		if err := os.WriteFile(c.MemoryFile, nil, 0o600); err != nil {
			return err
		}
		if err := os.Truncate(c.MemoryFile, int64(c.MemoryMiB)<<20); err != nil {
			return err
		}
	}
	vm.cmd = exec.Command("sleep", "3600")
	if err := vm.cmd.Start(); err != nil {
		return err
	}
	go func() {
		vm.cmd.Wait()
		close(vm.done)
	}()
	if err := os.WriteFile(c.PIDFile, []byte(strconv.Itoa(vm.cmd.Process.Pid)), 0o600); err != nil {
		return err
	}
	vm.vmm.mu.Lock()
	if vm.vmm.vms == nil {
		vm.vmm.vms = map[string]*VM{}
	}
	vm.vmm.vms[c.PIDFile] = vm
	vm.vmm.Started++
	vm.vmm.mu.Unlock()
	ln, err := unixsock.Listen(c.AgentSocket)
	if err != nil {
		return err
	}
	vm.ln = ln
	go func() {
		<-vm.done
		ln.Close()
	}()
	switch {
	case vm.vmm.Broken:
		vm.console("Kernel panic - not syncing: fake")
		time.AfterFunc(50*time.Millisecond, vm.Crash)
	case !c.Incoming:
		vm.serve()
	}
	return nil
}

// Config is the configuration the VM was made with.
func (vm *VM) Config() hypervisor.Config { return vm.cfg }

func (vm *VM) running() bool {
	select {
	case <-vm.done:
		return false
	default:
		return vm.cmd != nil
	}
}

// PID is the VM's process.
func (vm *VM) PID() int {
	if vm.cmd == nil || vm.cmd.Process == nil {
		return 0
	}
	return vm.cmd.Process.Pid
}

// Wait waits for the VM's process to exit.
func (vm *VM) Wait() error {
	<-vm.done
	return errors.New("fake VM exited")
}

// Stop kills the VM.
func (vm *VM) Stop(ctx context.Context, timeout time.Duration) error {
	vm.Crash()
	return nil
}

// Crash kills the VM's process, as a dying QEMU would go.
func (vm *VM) Crash() {
	if vm.cmd != nil && vm.cmd.Process != nil {
		vm.cmd.Process.Signal(syscall.SIGKILL)
		<-vm.done
	}
}

// SaveTemplate writes a state file.
func (vm *VM) SaveTemplate(ctx context.Context, stateFile string) error {
	return os.WriteFile(stateFile, []byte("fake state"), 0o600)
}

// RestoreTemplate checks the state file, then lets the guest run.
func (vm *VM) RestoreTemplate(ctx context.Context, stateFile string) error {
	if b, err := os.ReadFile(stateFile); err != nil || string(b) != "fake state" {
		return fmt.Errorf("restore: bad state %s", stateFile)
	}
	vm.vmm.mu.Lock()
	vm.vmm.Restored++
	vm.vmm.mu.Unlock()
	vm.serve()
	return nil
}

// serve says on the console that the agent waits, and answers sessions
// one after the other, saying it again after each, as the agent does.
func (vm *VM) serve() {
	vm.console(protocol.WaitingMessage)
	go func() {
		for {
			conn, err := vm.ln.Accept()
			if err != nil {
				return
			}
			vm.session(conn)
			vm.console(protocol.WaitingMessage)
		}
	}()
}

func (vm *VM) console(line string) {
	f, err := os.OpenFile(vm.cfg.ConsoleLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err == nil {
		fmt.Fprintln(f, line)
		f.Close()
	}
}

func (vm *VM) session(conn net.Conn) {
	sess, err := yamux.Server(conn, protocol.YamuxConfig())
	if err != nil {
		return
	}
	defer sess.Close()
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			return
		}
		go vm.call(st)
	}
}

func (vm *VM) call(st net.Conn) {
	var req protocol.Request
	if err := protocol.ReadFrame(st, &req); err != nil {
		st.Close()
		return
	}
	body, err := vm.answer(req)
	rsp := protocol.Response{}
	if err != nil {
		rsp.Error = err.Error()
	} else if body != nil {
		rsp.Body, _ = json.Marshal(body)
	}
	protocol.WriteFrame(st, rsp)
	if req.Method != protocol.MethodOpenStdio {
		st.Close()
		return
	}
	// stdin is read until the host closes it; stdout and stderr end at once.
	var o protocol.OpenStdioRequest
	json.Unmarshal(req.Body, &o)
	if o.Stream == protocol.Stdin {
		buf := make([]byte, 4096)
		for {
			if _, err := st.Read(buf); err != nil {
				break
			}
		}
	}
	st.Close()
}

// proc returns the process of container id (execID "" for its own).
func (vm *VM) proc(id, execID string) *process {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	k := id + "/" + execID
	p := vm.procs[k]
	if p == nil {
		p = &process{exited: make(chan struct{})}
		vm.procs[k] = p
	}
	return p
}

// answer is the guest's side of each method: what the tests need.
func (vm *VM) answer(req protocol.Request) (any, error) {
	switch req.Method {
	case protocol.MethodPing:
		return protocol.PingResponse{Version: protocol.Version, Kernel: "fake"}, nil
	case protocol.MethodCreateContainer:
		var r protocol.CreateContainerRequest
		json.Unmarshal(req.Body, &r)
		vm.proc(r.ID, "")
		return protocol.CreateContainerResponse{PID: 1}, nil
	case protocol.MethodSignalProcess:
		var r protocol.SignalProcessRequest
		json.Unmarshal(req.Body, &r)
		vm.proc(r.ID, r.ExecID).exit(128 + r.Signal)
		return protocol.Empty{}, nil
	case protocol.MethodWaitProcess:
		var r protocol.WaitProcessRequest
		json.Unmarshal(req.Body, &r)
		p := vm.proc(r.ID, r.ExecID)
		<-p.exited
		return protocol.WaitProcessResponse{ExitStatus: p.status}, nil
	case protocol.MethodStartContainer, protocol.MethodOpenStdio, protocol.MethodShutdown,
		protocol.MethodReseed, protocol.MethodConfigureNetwork:
		return protocol.Empty{}, nil
	case protocol.MethodWarm:
		return protocol.WarmResponse{}, nil
	}
	return nil, fmt.Errorf("fake agent: %s is not faked", strings.TrimSpace(req.Method))
}
